"""Data: the marketplace generator, the LETOR loader, validation, Feast features, training set."""
