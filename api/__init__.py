"""The HTTP API: FastAPI served by uvicorn on the worker's own event loop."""
