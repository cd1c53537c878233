"""The top layer: the `ranklab` command line, the project template and the workshop labs.
They import every stage; no stage imports them."""
