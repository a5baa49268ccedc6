// ESM in a .js file: the package.json beside it says "type": "module".
export async function handler(event) {
  return { module: 'esm .js', got: event };
}
