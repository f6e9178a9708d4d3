"""Image sources. Each yields candidate images for one region; all share the ingest path."""
