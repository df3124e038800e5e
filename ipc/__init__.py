"""Cross-process formats of the runner: the shared-memory frame ring and the control messages.

Nothing outside this package defines what crosses a process boundary, and this package imports
nothing else of the project.
"""
