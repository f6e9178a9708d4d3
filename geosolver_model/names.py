"""The names of published model artifacts' parts, shared by the stages that write them and the readers
(locate, play, benchmark), so a reader never imports the stages for a constant."""

PUBLISHED = "finetuned"  # a model version's published geolocator folder
PREDICTIONS = "predictions.parquet"  # in an evaluation's folder
LOCATOR = "locator"  # the evaluation comparator that scores what `predict` and `play` answer
