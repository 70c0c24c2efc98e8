// Deploys PLEDRegistry and PLEDToken, grants roles, prints the addresses as one JSON line.
//
//   PLED_RPC_URL=http://127.0.0.1:8545 PLED_DEPLOYER_KEY=0x... \
//     npx hardhat run scripts/deploy.ts --network pled
//
// Optional environment:
//   PLED_COMMITTER  address to grant COMMITTER_ROLE on the registry (besides the deployer)
//   PLED_MINTER     address to grant MINTER_ROLE on the token (besides the deployer)
//   PLED_TOKEN_URI  ERC-1155 metadata URI (default: empty)
// Without --network it deploys to Hardhat's throw-away in-process chain (a dry run).
// The JSON goes to stdout; progress goes to stderr.
import { network } from "hardhat";
import { getAddress, isAddress, type Address } from "viem";

function optionalAddress(name: string): Address | undefined {
  const value = process.env[name]?.trim();
  if (value === undefined || value === "") return undefined;
  if (!isAddress(value)) throw new Error(`${name} is not an address: ${value}`);
  return getAddress(value);
}

const committer = optionalAddress("PLED_COMMITTER");
const minter = optionalAddress("PLED_MINTER");
const tokenUri = process.env.PLED_TOKEN_URI ?? "";

const connection = await network.create();
const { viem } = connection;
const publicClient = await viem.getPublicClient();
const [deployer] = await viem.getWalletClients();
const chainId = await publicClient.getChainId();
const log = (msg: string) => process.stderr.write(`${msg}\n`);

log(`deploying to ${connection.networkName} (chain ${chainId}) from ${deployer.account.address}`);
const registry = await viem.deployContract("PLEDRegistry");
log(`PLEDRegistry at ${registry.address}`);
const token = await viem.deployContract("PLEDToken", [registry.address, tokenUri]);
log(`PLEDToken at ${token.address}`);

async function send(what: string, hash: Promise<`0x${string}`>) {
  const receipt = await publicClient.waitForTransactionReceipt({ hash: await hash });
  if (receipt.status !== "success") throw new Error(`${what} reverted (tx ${receipt.transactionHash})`);
  log(what);
}
if (committer !== undefined) {
  const role = await registry.read.COMMITTER_ROLE();
  if (!(await registry.read.hasRole([role, committer]))) {
    await send(`granted COMMITTER_ROLE to ${committer}`, registry.write.grantRole([role, committer]));
  }
}
if (minter !== undefined) {
  const role = await token.read.MINTER_ROLE();
  if (!(await token.read.hasRole([role, minter]))) {
    await send(`granted MINTER_ROLE to ${minter}`, token.write.grantRole([role, minter]));
  }
}

const deployBlock = await publicClient.getBlockNumber();
console.log(
  JSON.stringify({
    network: connection.networkName,
    chainId,
    deployer: getAddress(deployer.account.address),
    registry: getAddress(registry.address),
    token: getAddress(token.address),
    committers: [getAddress(deployer.account.address), ...(committer ? [committer] : [])],
    minters: [getAddress(deployer.account.address), ...(minter ? [minter] : [])],
    tokenUri,
    block: Number(deployBlock),
  }),
);
await connection.close();
