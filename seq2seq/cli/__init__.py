"""The command line: the train, translate and generate commands, the output files they write, and
how every command reports a user error."""
