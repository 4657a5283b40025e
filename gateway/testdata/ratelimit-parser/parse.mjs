// Reads a JSON object of response headers on stdin and prints what ratelimit-header-parser
// makes of them, as JSON.
import { parseRateLimit } from 'ratelimit-header-parser';

let input = '';
for await (const chunk of process.stdin) input += chunk;
const parsed = parseRateLimit(new Headers(JSON.parse(input)));
process.stdout.write(JSON.stringify(parsed ?? {}));
