// Hardhat compiles the same sources as edgetune's Python compiler (python/edgetune/chain/compiler.py)
// with the same npm solc and the same settings, so both produce identical bytecode
// (tests/chain/test_hardhat_bytecode.py checks it). Everything works offline.
require("@nomicfoundation/hardhat-ethers");

const { subtask } = require("hardhat/config");
const { TASK_COMPILE_SOLIDITY_GET_SOLC_BUILD } = require("hardhat/builtin-tasks/task-names");

const SOLC_VERSION = require("solc/package.json").version;
// One settings file for both compilers: evmVersion, optimizer, metadata hash.
const SOLC_SETTINGS = require("./python/edgetune/chain/solc_settings.json");

// Hardhat would download solc from binaries.soliditylang.org; use the npm wasm build instead.
subtask(TASK_COMPILE_SOLIDITY_GET_SOLC_BUILD, async ({ solcVersion }, _hre, runSuper) => {
  if (solcVersion !== SOLC_VERSION) {
    return runSuper();
  }
  const solc = require("solc");
  return {
    compilerPath: require.resolve("solc/soljson.js"),
    isSolcJs: true,
    version: solcVersion,
    longVersion: solc.version().replace(/\.Emscripten\.clang$/, ""),
  };
});

/** @type import('hardhat/config').HardhatUserConfig */
module.exports = {
  solidity: {
    version: SOLC_VERSION,
    settings: SOLC_SETTINGS,
  },
  paths: {
    sources: "./contracts",
    tests: "./tests/hardhat",
    cache: "./cache",
    artifacts: "./artifacts",
  },
  defaultNetwork: "hardhat",
  networks: {
    hardhat: {
      chainId: 31337,
      hardfork: SOLC_SETTINGS.evmVersion,
    },
    localhost: {
      url: "http://127.0.0.1:8545",
      chainId: 31337,
    },
  },
};
