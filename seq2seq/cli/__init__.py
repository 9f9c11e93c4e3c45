"""The command line: the train, translate, evaluate and generate commands (a module each), the
output files they write, and how every command reports a user error."""
