"""The ingest engine: sources list candidates; the main process decides and keeps the ledger; worker
processes download, decode and hash. See engine.py."""
