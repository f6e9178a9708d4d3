"""What a published dataset version carries for people and checks: card, coverage map, catalog, invariants."""
