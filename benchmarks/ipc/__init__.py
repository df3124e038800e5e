"""IPC benchmark: a frame hop between processes through the frame ring, a multiprocessing Queue
and a Pipe, against a plain memcpy of the same bytes. Run ``python -m benchmarks.ipc``."""
