// Fixture: a syntax error (reported as Runtime.UserCodeSyntaxError).
exports.handler = async (event) => { return {;
