"""The commands, one library function each, taking a typed options object and returning a result. The CLI
parses and prints around them; the pipeline is a table of them."""
