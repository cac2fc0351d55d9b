// Compiles TnodeSubnets.sol with the pinned solc from npm and writes TnodeSubnets.json (ABI +
// bytecode). Settings are fixed here so every machine produces the same bytes.
// Usage: node compile.cjs [--check]  (--check compares with the committed artifact and exits 1 on a difference)
"use strict";
const fs = require("fs");
const path = require("path");
const solc = require("solc");

const here = __dirname;
const source = fs.readFileSync(path.join(here, "TnodeSubnets.sol"), "utf8");
const input = {
  language: "Solidity",
  sources: { "TnodeSubnets.sol": { content: source } },
  settings: {
    optimizer: { enabled: true, runs: 200 },
    evmVersion: "paris",
    viaIR: true,
    metadata: { bytecodeHash: "none" },
    outputSelection: { "*": { "*": ["abi", "evm.bytecode.object", "evm.deployedBytecode.object"] } },
  },
};
const out = JSON.parse(solc.compile(JSON.stringify(input)));
const errors = (out.errors || []).filter((e) => e.severity === "error");
for (const e of out.errors || []) process.stderr.write(e.formattedMessage + "\n");
if (errors.length) process.exit(2);
const c = out.contracts["TnodeSubnets.sol"].TnodeSubnets;
const artifact = {
  contractName: "TnodeSubnets",
  compiler: "solc " + solc.version(),
  settings: input.settings,
  abi: c.abi,
  bytecode: "0x" + c.evm.bytecode.object,
  deployedBytecode: "0x" + c.evm.deployedBytecode.object,
};
const text = JSON.stringify(artifact, null, 1) + "\n";
const target = path.join(here, "TnodeSubnets.json");
if (process.argv.includes("--check")) {
  const committed = fs.existsSync(target) ? fs.readFileSync(target, "utf8") : "";
  if (committed !== text) {
    process.stderr.write("TnodeSubnets.json differs from a fresh compile of TnodeSubnets.sol: run node compile.cjs\n");
    process.exit(1);
  }
  process.stdout.write("TnodeSubnets.json matches the source\n");
} else {
  fs.writeFileSync(target, text);
  process.stdout.write("wrote " + target + "\n");
}
