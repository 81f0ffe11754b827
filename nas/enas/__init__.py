"""ENAS: the LSTM controller (suggestion side) and the child-network trial program."""
