// ESM handler fixture: loaded with import(), top-level await included.
const greeting = await Promise.resolve('hello from esm');

export const handler = async (event) => ({ statusCode: 200, body: greeting, module: 'esm', path: event.rawPath ?? null });
