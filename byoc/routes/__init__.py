"""HTTP route modules of the runner, one per area of the API."""
