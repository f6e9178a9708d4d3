"""`geosolver play`: GeoGuessr against the model, explore mode and the errors view, as a local web page."""
