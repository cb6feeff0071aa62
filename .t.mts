import { runPolicyCli } from './broker/rules/index.ts';
const io = { stdin: process.stdin, stdout: (s: string) => process.stdout.write(s), stderr: (s: string) => process.stderr.write(s) };
process.exitCode = await runPolicyCli(process.argv.slice(2), io);
