// Hardhat 3 config for PLED. Compiles ../contracts/solidity with the solc that the npm
// package `solc` ships (soljson.js), so nothing is ever downloaded.
import { fileURLToPath } from "node:url";
import { existsSync } from "node:fs";

import hardhatNetworkHelpers from "@nomicfoundation/hardhat-network-helpers";
import hardhatNodeTestRunner from "@nomicfoundation/hardhat-node-test-runner";
import hardhatViem from "@nomicfoundation/hardhat-viem";
import hardhatViemAssertions from "@nomicfoundation/hardhat-viem-assertions";
import { configVariable, defineConfig } from "hardhat/config";

const SOLC_VERSION = "0.8.30";
const soljson = fileURLToPath(new URL("./node_modules/solc/soljson.js", import.meta.url));
if (!existsSync(soljson)) {
  throw new Error(`solc ${SOLC_VERSION} not found at ${soljson}: run scripts/setup-hardhat.sh`);
}

export default defineConfig({
  plugins: [hardhatViem, hardhatViemAssertions, hardhatNodeTestRunner, hardhatNetworkHelpers],
  paths: {
    // contracts -> ../contracts/solidity (a symlink: Hardhat 3 only compiles files inside
    // its project). mocks/ holds test-only contracts that are never exported.
    sources: ["contracts", "mocks"],
  },
  solidity: {
    version: SOLC_VERSION,
    path: soljson,
    settings: {
      optimizer: { enabled: true, runs: 200 },
      // Cancun: accepted by every chain since Dencun (2024) and by anvil; the code uses
      // nothing newer.
      evmVersion: "cancun",
    },
  },
  networks: {
    // Any JSON-RPC endpoint (anvil, a testnet, production) for `npm run deploy`:
    // PLED_RPC_URL and PLED_DEPLOYER_KEY come from the environment, never from a file.
    pled: {
      type: "http",
      chainType: "l1",
      url: configVariable("PLED_RPC_URL"),
      accounts: [configVariable("PLED_DEPLOYER_KEY")],
    },
  },
});
