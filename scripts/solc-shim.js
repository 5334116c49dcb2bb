#!/usr/bin/env node
// Makes npm `solc` (wasm) answer like a native solc binary, so py-solc-x can drive it offline:
//   solc-shim.js --version          -> "Version: 0.8.37+commit..." (py-solc-x parses this)
//   solc-shim.js --standard-json    -> compiler JSON in on stdin, ONLY the JSON out on stdout
// (the `solcjs` CLI prints an SMT-solver notice before the JSON, which breaks py-solc-x).
"use strict";

const solc = require("solc");

function readStdin() {
  return require("fs").readFileSync(0, "utf8");
}

function main(argv) {
  if (argv.includes("--version")) {
    process.stdout.write(`solc, the solidity compiler commandline interface\nVersion: ${solc.version()}\n`);
    return 0;
  }
  if (argv.includes("--standard-json")) {
    process.stdout.write(solc.compile(readStdin()) + "\n");
    return 0;
  }
  process.stderr.write("solc-shim: only --version and --standard-json are supported\n");
  return 1;
}

process.exitCode = main(process.argv.slice(2));
