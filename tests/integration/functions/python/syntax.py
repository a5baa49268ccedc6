"""Fixture: a syntax error (Runtime.UserCodeSyntaxError)."""
def handler(event, context)
    return 1
