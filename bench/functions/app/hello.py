# The benchmark's trivial Python handler (runtime: python, handler
# hello.handler): the Python twin of index.js, for the cold-start figures.
def handler(event, context):
    return {"statusCode": 200, "body": "ok"}
