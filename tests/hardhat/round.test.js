// One full EdgeTune round on the Hardhat network with three edges: create (funded), register,
// start, commit/reveal updates, commit/reveal votes, finalize, then release, refund and withdraw.
// Commitments and rewards are recomputed here in JS, independently of the Python client, so a
// change to the contract's encodings or reward rule fails this test.
const { expect } = require("chai");
const { ethers } = require("hardhat");

const coder = ethers.AbiCoder.defaultAbiCoder();
const BPS = 10_000n;
const ETHER = 10n ** 18n;
const BALLOT_TYPE = "tuple(uint256,uint256,bytes32,string,bool,int32[])";
const Phase = { Registration: 1n, UpdateCommit: 2n, UpdateReveal: 3n, VoteCommit: 4n, VoteReveal: 5n, Finalizable: 6n, Finished: 7n };
const RewardKind = { Trainer: 0n, Validator: 1n };

const label = (text) => ethers.id(text);

function updateCommitment(chainId, contract, taskId, round, edge, u) {
  const types = ["uint256", "address", "uint256", "uint16", "address", "bytes32", "string", "uint32", "bytes32"];
  const values = [chainId, contract, taskId, round, edge, u.hash, u.cid, u.samples, u.salt];
  return ethers.keccak256(coder.encode(types, values));
}

function ballotTuple(b) {
  return [b.validMask, b.includedMask, b.aggregateHash, b.aggregateCid, b.approve, b.scores];
}

function voteCommitment(chainId, contract, taskId, round, edge, ballot, salt) {
  const types = ["uint256", "address", "uint256", "uint16", "address", BALLOT_TYPE, "bytes32"];
  const values = [chainId, contract, taskId, round, edge, ballotTuple(ballot), salt];
  return ethers.keccak256(coder.encode(types, values));
}

function candidateKey(ballot) {
  return ethers.keccak256(coder.encode(["uint256", "uint256", "bytes32"], [ballot.validMask, ballot.includedMask, ballot.aggregateHash]));
}

// Lower stake-weighted median: the smallest score whose cumulative stake reaches half the total.
function lowerWeightedMedian(pairs) {
  const sorted = [...pairs].sort((a, b) => (a.score < b.score ? -1 : a.score > b.score ? 1 : 0));
  const total = sorted.reduce((sum, p) => sum + p.stake, 0n);
  let cumulative = 0n;
  for (const p of sorted) {
    cumulative += p.stake;
    if (2n * cumulative >= total) return p.score;
  }
  return 0n;
}

// Expected credits when every edge revealed in `order`, all approve one candidate including all.
function expectedRewards(budget, validatorShareBps, order, stakes, scoresByVoter) {
  const trainerPool = (budget * (BPS - validatorShareBps)) / BPS;
  const contributions = order.map((author, i) => {
    const peers = order.filter((v) => v !== author).map((v) => ({ score: scoresByVoter[v][i], stake: stakes[v] }));
    const median = lowerWeightedMedian(peers);
    return median > 0n ? median : 0n;
  });
  const total = contributions.reduce((a, b) => a + b, 0n);
  const trainer = order.map((_, i) => (total === 0n ? 0n : (trainerPool * contributions[i]) / total));
  const validator = (budget - trainerPool) / BigInt(order.length);
  return { contributions, trainer, validator };
}

async function expectCustomError(contract, promise, name, args) {
  let caught;
  try {
    await promise;
  } catch (error) {
    caught = error;
  }
  expect(caught, `expected ${name}`).to.not.equal(undefined);
  const parsed = contract.interface.parseError(caught.data);
  expect(parsed, `undecodable revert data ${caught.data}`).to.not.equal(null);
  expect(parsed.name).to.equal(name);
  expect(parsed.args.toArray()).to.deep.equal(args);
}

describe("EdgeTune: one full round on Hardhat", function () {
  this.timeout(20_000);

  it("pays the median-rule split, decodes custom errors and conserves funds", async function () {
    const [owner, ...rest] = await ethers.getSigners();
    const edges = rest.slice(0, 3);
    const edgeTune = await ethers.deployContract("EdgeTune");
    const address = await edgeTune.getAddress();
    const chainId = (await ethers.provider.getNetwork()).chainId;

    const pool = 3n * ETHER + 1n; // odd wei: the rounding dust stays in the pool for the refund
    const config = {
      baseModelHash: label("base"),
      adapterSpecHash: label("spec"),
      initialGlobalHash: label("global-0"),
      baseModelUri: "tiny-llama",
      baseModelCid: "bafybase",
      initialGlobalCid: "bafyglobal0",
      rounds: 1,
      maxEdges: 8,
      quorumBps: 6667,
      minTurnoutBps: 5000,
      validatorShareBps: 2000,
      registrationBlocks: 100,
      commitBlocks: 10,
      revealBlocks: 10,
      voteCommitBlocks: 10,
      voteRevealBlocks: 10,
      maxSamples: 1000,
      harmTolerance: 50_000,
      minStake: ETHER,
      slashNonReveal: ETHER / 2n,
      slashInvalid: ETHER,
    };
    await (await edgeTune.createTask(config, { value: pool })).wait();
    const taskId = await edgeTune.taskCount();
    expect(await edgeTune.phase(taskId)).to.equal(Phase.Registration);

    const stakes = {};
    for (const [i, edge] of edges.entries()) {
      stakes[edge.address] = BigInt(i + 1) * ETHER; // 1, 2, 3 ether: the median is stake-weighted
      await (await edgeTune.connect(edge).register(taskId, { value: stakes[edge.address] })).wait();
    }
    await expectCustomError(
      edgeTune,
      edgeTune.connect(edges[0]).register(taskId, { value: ETHER }),
      "EdgeTuneAlreadyRegistered",
      [taskId, edges[0].address],
    );
    await (await edgeTune.start(taskId)).wait();
    expect(await edgeTune.phase(taskId)).to.equal(Phase.UpdateCommit);

    // Update commit: the JS commitment must equal the contract's own view of it.
    const round = 1;
    const updates = {};
    for (const [i, edge] of edges.entries()) {
      const u = { hash: label(`update-${i}`), cid: `bafyupdate${i}`, samples: 100 * (i + 1), salt: label(`salt-${i}`) };
      updates[edge.address] = u;
      const mine = updateCommitment(chainId, address, taskId, round, edge.address, u);
      const theirs = await edgeTune.updateCommitment(taskId, round, edge.address, u.hash, u.cid, u.samples, u.salt);
      expect(mine).to.equal(theirs);
      await (await edgeTune.connect(edge).commitUpdate(taskId, round, mine)).wait();
    }
    expect(await edgeTune.phase(taskId)).to.equal(Phase.UpdateReveal); // closed early: all committed

    const [first, second, third] = edges;
    const wrongSalt = { ...updates[first.address], salt: label("wrong") };
    await expectCustomError(
      edgeTune,
      edgeTune.connect(first).revealUpdate(taskId, round, wrongSalt.hash, wrongSalt.cid, wrongSalt.samples, wrongSalt.salt),
      "EdgeTuneCommitmentMismatch",
      [taskId, BigInt(round), first.address],
    );
    const order = [third.address, first.address, second.address]; // reveal order = mask bit order
    for (const who of order) {
      const u = updates[who];
      const signer = edges.find((e) => e.address === who);
      await (await edgeTune.connect(signer).revealUpdate(taskId, round, u.hash, u.cid, u.samples, u.salt)).wait();
    }
    expect(await edgeTune.phase(taskId)).to.equal(Phase.VoteCommit);
    const revealed = await edgeTune.revealedUpdates(taskId, round);
    expect(revealed.map((r) => r.edge)).to.deep.equal(order);

    // Votes: one candidate, but each validator scores the updates differently (millionths).
    // Index i scores order[i]; own scores are ignored by the contract's median.
    const scoresByVoter = {
      [first.address]: [400_000n, 999_999n, 50_000n],
      [second.address]: [100_000n, 300_000n, -20_000n],
      [third.address]: [-5n, 200_000n, -70_000n],
    };
    const ballots = {};
    const salts = {};
    for (const edge of edges) {
      ballots[edge.address] = {
        validMask: 0b111n,
        includedMask: 0b111n,
        aggregateHash: label("aggregate-1"),
        aggregateCid: "bafyaggregate1",
        approve: true,
        scores: scoresByVoter[edge.address],
      };
      salts[edge.address] = label(`vote-salt-${edge.address}`);
      const commitment = voteCommitment(chainId, address, taskId, round, edge.address, ballots[edge.address], salts[edge.address]);
      const theirs = await edgeTune.voteCommitment(taskId, round, edge.address, ballotTuple(ballots[edge.address]), salts[edge.address]);
      expect(commitment).to.equal(theirs);
      await (await edgeTune.connect(edge).commitVote(taskId, round, commitment)).wait();
    }
    expect(await edgeTune.phase(taskId)).to.equal(Phase.VoteReveal);
    for (const edge of edges) {
      const receipt = await (await edgeTune.connect(edge).revealVote(taskId, round, ballotTuple(ballots[edge.address]), salts[edge.address])).wait();
      const event = receipt.logs.map((log) => edgeTune.interface.parseLog(log)).find((e) => e && e.name === "VoteRevealed");
      expect(event.args.candidate).to.equal(candidateKey(ballots[edge.address]));
    }
    expect(await edgeTune.phase(taskId)).to.equal(Phase.Finalizable);

    // Finalize (anyone): compare every credit with the JS recomputation of the median rule.
    const balanceBefore = await ethers.provider.getBalance(address);
    const budget = pool / BigInt(config.rounds);
    const want = expectedRewards(budget, BigInt(config.validatorShareBps), order, stakes, scoresByVoter);
    // order[0] (third): peers first 400000 @1 ether, second 100000 @2 ether -> 100000;
    // order[1] (first): third 200000 @3, second 300000 @2 -> 200000;
    // order[2] (second): third -70000 @3, first 50000 @1 -> -70000, floored to 0 (paid nothing).
    expect(want.contributions).to.deep.equal([100_000n, 200_000n, 0n]);
    const receipt = await (await edgeTune.connect(rest[5]).finalize(taskId)).wait();
    const logs = receipt.logs.map((log) => edgeTune.interface.parseLog(log)).filter(Boolean);
    const credits = logs.filter((e) => e.name === "RewardCredited").map((e) => [e.args.edge, e.args.kind, e.args.amount]);
    const expectedCredits = [];
    order.forEach((who, i) => {
      if (want.trainer[i] > 0n) expectedCredits.push([who, RewardKind.Trainer, want.trainer[i]]);
    });
    for (const edge of edges) expectedCredits.push([edge.address, RewardKind.Validator, want.validator]);
    expect(credits).to.deep.equal(expectedCredits);
    const scored = logs.filter((e) => e.name === "ContributionScored").map((e) => [e.args.edge, e.args.medianScore]);
    expect(scored).to.deep.equal([
      [order[0], 100_000n],
      [order[1], 200_000n],
      [order[2], -70_000n],
    ]);
    const finalized = logs.find((e) => e.name === "RoundFinalized");
    const paid = want.trainer.reduce((a, b) => a + b, 0n) + 3n * want.validator;
    expect(finalized.args.accepted).to.equal(true);
    expect(finalized.args.globalHash).to.equal(label("aggregate-1"));
    expect([finalized.args.budget, finalized.args.paid]).to.deep.equal([budget, paid]);
    expect(logs.some((e) => e.name === "Slashed")).to.equal(false);
    expect(await edgeTune.phase(taskId)).to.equal(Phase.Finished);
    await expectCustomError(edgeTune, edgeTune.finalize(taskId), "EdgeTuneWrongPhase", [taskId, Phase.Finished, Phase.Finalizable]);

    // Funds conserved: balance == stakes + owed + undistributed pool.
    const funds = await edgeTune.taskFunds(taskId);
    expect(funds.pool).to.equal(pool - paid);
    let owedTotal = 0n;
    let stakeTotal = 0n;
    for (const edge of edges) {
      owedTotal += await edgeTune.owed(edge.address);
      stakeTotal += await edgeTune.stakeOf(taskId, edge.address);
    }
    expect(balanceBefore).to.equal(pool + 6n * ETHER);
    expect(await ethers.provider.getBalance(address)).to.equal(stakeTotal + owedTotal + funds.pool);

    // Release stakes, refund the dust to the owner, and withdraw everything through `withdraw`.
    for (const [i, edge] of edges.entries()) {
      await (await edgeTune.connect(edge).releaseStake(taskId)).wait();
      const index = order.indexOf(edge.address);
      const owed = await edgeTune.owed(edge.address);
      expect(owed).to.equal(stakes[edge.address] + want.trainer[index] + want.validator);
      const before = await ethers.provider.getBalance(edge.address);
      const tx = await (await edgeTune.connect(edge).withdraw()).wait();
      const fee = tx.gasUsed * tx.gasPrice;
      expect(await ethers.provider.getBalance(edge.address)).to.equal(before + owed - fee, `edge ${i}`);
      await expectCustomError(edgeTune, edgeTune.connect(edge).withdraw(), "EdgeTuneNothingToWithdraw", [edge.address]);
    }
    await (await edgeTune.refundPool(taskId)).wait();
    expect(await edgeTune.owed(owner.address)).to.equal(pool - paid);
    await (await edgeTune.withdraw()).wait();
    expect(await ethers.provider.getBalance(address)).to.equal(0n);
  });
});
