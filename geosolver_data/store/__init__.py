"""Where artifacts live and how they are written: the one seam between the data and model packages."""
