// One full EdgeTune v2 round on the Hardhat network with three edges: create (funded), register,
// start, commit/reveal updates, commit/reveal score ballots, tally, commit/reveal attestations,
// finalize, then release, refund and withdraw. Commitments, the stage-1 tally (validity, lower
// stake-weighted medians over all scorers, agreements) and every credit are recomputed here in JS,
// independently of the Python client, so a change to the contract's encodings or reward rules
// fails this test.
const { expect } = require("chai");
const { ethers } = require("hardhat");

const coder = ethers.AbiCoder.defaultAbiCoder();
const BPS = 10_000n;
const MILLION = 1_000_000n;
const ETHER = 10n ** 18n;
const Phase = {
  Registration: 1n, UpdateCommit: 2n, UpdateReveal: 3n, ScoreCommit: 4n, ScoreReveal: 5n,
  Tally: 6n, AttestCommit: 7n, AttestReveal: 8n, Finalizable: 9n, Finished: 10n,
};
const RewardKind = { Trainer: 0n, Validator: 1n };

const label = (text) => ethers.id(text);
const keccakEncoded = (types, values) => ethers.keccak256(coder.encode(types, values));

// keccak256(abi.encode(chainid, contract, taskId, round, uint8 stage, sender, payload, salt))
function commitment(chainId, contract, taskId, round, stage, edge, payload, salt) {
  const types = ["uint256", "address", "uint256", "uint16", "uint8", "address", "bytes32", "bytes32"];
  return keccakEncoded(types, [chainId, contract, taskId, round, stage, edge, payload, salt]);
}
const updatePayload = (u) => keccakEncoded(["bytes32", "string"], [u.hash, u.cid]);
const packScores = (scores) => ethers.solidityPacked(scores.map(() => "int32"), scores);
const ballotPayload = (b) => keccakEncoded(["uint256", "uint256", "bytes"], [b.validMask, b.copyMask, packScores(b.scores)]);
const attestPayload = (a) => keccakEncoded(["bytes32", "string", "bool"], [a.hash, a.cid, a.approve]);
const candidateKey = (a) => keccakEncoded(["bytes32", "string"], [a.hash, a.cid]);
const abs = (x) => (x < 0n ? -x : x);

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

// Stage 1 from ballots in score-reveal order: every update valid (all scorers mark all valid),
// no copies; medians over ALL scorers (own score included); included if median >= -tau.
function expectedTally(ballots, stakes, updates, tau) {
  const medians = [];
  for (let j = 0; j < updates; j++) {
    medians.push(lowerWeightedMedian(ballots.map((b) => ({ score: b.scores[j], stake: stakes[b.scorer] }))));
  }
  let included = 0n;
  medians.forEach((m, j) => {
    if (m >= -tau) included |= 1n << BigInt(j);
  });
  // Spread around the medians' own lower median: any constant scorer is at least that far.
  const sorted = [...medians].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  const centre = sorted[Math.floor((sorted.length - 1) / 2)];
  const spread = medians.reduce((sum, m) => sum + abs(m - centre), 0n);
  const agreements = ballots.map((b) => {
    const distance = b.scores.reduce((sum, s, j) => sum + abs(s - medians[j]), 0n);
    return distance < spread ? ((spread - distance) * MILLION) / spread : 0n;
  });
  return { medians, included, agreements };
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

function eventsOf(contract, receipt, name) {
  return receipt.logs.map((log) => contract.interface.parseLog(log)).filter((e) => e && e.name === name);
}

describe("EdgeTune v2: one full round on Hardhat", function () {
  this.timeout(30_000);

  it("tallies medians and agreements, pays by them to the wei, and conserves funds", async function () {
    const [owner, ...rest] = await ethers.getSigners();
    const [first, second, third] = rest.slice(0, 3);
    const edges = [first, second, third];
    const keeper = rest[5];
    const edgeTune = await ethers.deployContract("EdgeTune");
    const address = await edgeTune.getAddress();
    const chainId = (await ethers.provider.getNetwork()).chainId;

    const pool = 3n * ETHER + 1n; // odd wei: the rounding dust stays in the pool for the refund
    const tau = 50_000n;
    const config = {
      baseModelHash: label("base"), adapterSpecHash: label("spec"), initialGlobalHash: label("global-0"),
      baseModelUri: "tiny-llama", baseModelCid: "bafybase", initialGlobalCid: "bafyglobal0",
      rounds: 1, maxEdges: 8, quorumBps: 5001, minTurnoutBps: 5000, validatorShareBps: 2000,
      registrationBlocks: 100, commitBlocks: 10, revealBlocks: 10, scoreCommitBlocks: 10,
      scoreRevealBlocks: 10, tallyBlocks: 10, attestCommitBlocks: 10, attestRevealBlocks: 10,
      harmTolerance: tau, minStake: ETHER, slashAbsent: ETHER / 4n, slashNonReveal: ETHER / 2n,
      slashInvalid: ETHER,
    };
    await (await edgeTune.createTask(config, [], { value: pool })).wait();
    const taskId = await edgeTune.taskCount();
    expect(await edgeTune.phase(taskId)).to.equal(Phase.Registration);

    const stakes = {};
    for (const [i, edge] of edges.entries()) {
      stakes[edge.address] = BigInt(i + 1) * ETHER; // 1, 2, 3 ether: the median is stake-weighted
      await (await edgeTune.connect(edge).register(taskId, { value: stakes[edge.address] })).wait();
    }
    await expectCustomError(edgeTune, edgeTune.connect(first).register(taskId, { value: ETHER }),
      "EdgeTuneAlreadyRegistered", [taskId, first.address]);
    expect(await edgeTune.phase(taskId)).to.equal(Phase.Registration); // no auto-start
    await (await edgeTune.start(taskId)).wait();
    expect(await edgeTune.phase(taskId)).to.equal(Phase.UpdateCommit);

    const round = 1;
    const salt = (edge, stage) => label(`salt/${stage}/${edge.address}`);
    async function commit(edge, stage, payload) {
      const mine = commitment(chainId, address, taskId, round, stage, edge.address, payload, salt(edge, stage));
      const theirs = await edgeTune.commitmentOf(taskId, round, stage, edge.address, payload, salt(edge, stage));
      expect(mine).to.equal(theirs);
      await (await edgeTune.connect(edge).commit(taskId, round, stage, mine)).wait();
    }

    // Updates: committed in registration order, revealed in another (the reveal order indexes
    // the ballots' masks and scores).
    const updates = {};
    for (const [i, edge] of edges.entries()) {
      updates[edge.address] = { hash: label(`update-${i}`), cid: `bafyupdate${i}` };
      await commit(edge, Phase.UpdateCommit, updatePayload(updates[edge.address]));
    }
    expect(await edgeTune.phase(taskId)).to.equal(Phase.UpdateReveal); // closed early
    const u0 = updates[first.address];
    await expectCustomError(edgeTune,
      edgeTune.connect(first).revealUpdate(taskId, round, u0.hash, u0.cid, label("wrong")),
      "EdgeTuneCommitmentMismatch", [taskId, BigInt(round), first.address, Phase.UpdateCommit]);
    const order = [third, first, second];
    for (const edge of order) {
      const u = updates[edge.address];
      await (await edgeTune.connect(edge).revealUpdate(taskId, round, u.hash, u.cid, salt(edge, Phase.UpdateCommit))).wait();
    }
    expect(await edgeTune.phase(taskId)).to.equal(Phase.ScoreCommit);

    // Scores (millionths) of the updates in reveal order, own update included.
    const scores = {
      [first.address]: [400_000n, 999_999n, 50_000n],
      [second.address]: [100_000n, 300_000n, -20_000n],
      [third.address]: [-5n, 200_000n, -70_000n],
    };
    const ballots = edges.map((e) => ({ scorer: e.address, validMask: 0b111n, copyMask: 0n, scores: scores[e.address] }));
    for (const b of ballots) await commit(edges.find((e) => e.address === b.scorer), Phase.ScoreCommit, ballotPayload(b));
    expect(await edgeTune.phase(taskId)).to.equal(Phase.ScoreReveal);
    for (const b of ballots) {
      const edge = edges.find((e) => e.address === b.scorer);
      await (await edgeTune.connect(edge).revealScores(taskId, round, b.validMask, b.copyMask,
        packScores(b.scores), salt(edge, Phase.ScoreCommit))).wait();
    }
    expect(await edgeTune.phase(taskId)).to.equal(Phase.Tally);

    // Tally (anyone), with the ballots as revealed; a forged one is refused.
    const asTuples = (list) => list.map((b) => [b.scorer, b.validMask, b.copyMask, packScores(b.scores)]);
    const forged = [{ ...ballots[0], scores: [MILLION, MILLION, MILLION] }, ...ballots.slice(1)];
    await expectCustomError(edgeTune, edgeTune.connect(keeper).tally(taskId, round, 0, asTuples(forged)),
      "EdgeTuneBallotsMismatch", [taskId, BigInt(round)]);
    const want = expectedTally(ballots, stakes, 3, tau);
    // order[0] = third's update: scores 400000@1, 100000@2, -5@3 -> -5 (3 of 6 ether at or below);
    // order[1] = first's: 999999@1, 300000@2, 200000@3 -> 200000; order[2]: -70000@3 -> -70000.
    expect(want.medians).to.deep.equal([-5n, 200_000n, -70_000n]);
    const tallyReceipt = await (await edgeTune.connect(keeper).tally(taskId, round, 0, asTuples(ballots))).wait();
    const [tallied] = eventsOf(edgeTune, tallyReceipt, "RoundTallied");
    expect(tallied.args.medians.toArray()).to.deep.equal(want.medians);
    expect(tallied.args.agreements.toArray()).to.deep.equal(want.agreements);
    expect([tallied.args.scoreStake, tallied.args.validMask, tallied.args.copyMask, tallied.args.includedMask])
      .to.deep.equal([6n * ETHER, 0b111n, 0n, want.included]);
    expect(want.included).to.equal(0b011n); // -70000 < -tau
    expect(await edgeTune.phase(taskId)).to.equal(Phase.AttestCommit);

    // Attestations: everyone approves one (hash, CID) candidate.
    const aggregate = { hash: label("aggregate-1"), cid: "bafyaggregate1", approve: true };
    for (const edge of edges) await commit(edge, Phase.AttestCommit, attestPayload(aggregate));
    for (const edge of edges) {
      const receipt = await (await edgeTune.connect(edge).revealAttestation(taskId, round, aggregate.hash,
        aggregate.cid, true, salt(edge, Phase.AttestCommit))).wait();
      expect(eventsOf(edgeTune, receipt, "AttestationRevealed")[0].args.candidate).to.equal(candidateKey(aggregate));
    }
    expect(await edgeTune.phase(taskId)).to.equal(Phase.Finalizable);

    // Finalize (anyone): every credit against the JS recomputation, in the contract's order
    // (registration order; trainer before validator).
    const balanceBefore = await ethers.provider.getBalance(address);
    const budget = pool / BigInt(config.rounds);
    const trainerPool = (budget * (BPS - BigInt(config.validatorShareBps))) / BPS;
    const validatorPool = budget - trainerPool;
    const positive = want.medians.map((m, j) => ((want.included >> BigInt(j)) & 1n && m > 0n ? m : 0n));
    const medianTotal = positive.reduce((a, b) => a + b, 0n);
    const agreementTotal = want.agreements.reduce((a, b) => a + b, 0n);
    const expected = [];
    for (const edge of edges) {
      const j = order.indexOf(edge);
      const trainer = (trainerPool * positive[j]) / medianTotal;
      if (trainer > 0n) expected.push([edge.address, RewardKind.Trainer, trainer]);
      const k = ballots.findIndex((b) => b.scorer === edge.address);
      const validator = (validatorPool * want.agreements[k]) / agreementTotal;
      if (validator > 0n) expected.push([edge.address, RewardKind.Validator, validator]);
    }
    expect(expected.some(([who, kind]) => who === third.address && kind === RewardKind.Trainer)).to.equal(false);
    const receipt = await (await edgeTune.connect(keeper).finalize(taskId)).wait();
    const credits = eventsOf(edgeTune, receipt, "RewardCredited").map((e) => [e.args.edge, e.args.kind, e.args.amount]);
    expect(credits).to.deep.equal(expected);
    const paid = expected.reduce((sum, [, , amount]) => sum + amount, 0n);
    const [finalized] = eventsOf(edgeTune, receipt, "RoundFinalized");
    expect([finalized.args.accepted, finalized.args.candidate, finalized.args.globalHash, finalized.args.globalCid])
      .to.deep.equal([true, candidateKey(aggregate), aggregate.hash, aggregate.cid]);
    expect([finalized.args.approvingStake, finalized.args.attestStake, finalized.args.budget, finalized.args.paid])
      .to.deep.equal([6n * ETHER, 6n * ETHER, budget, paid]);
    expect(eventsOf(edgeTune, receipt, "Slashed")).to.deep.equal([]);
    expect(await edgeTune.phase(taskId)).to.equal(Phase.Finished);
    await expectCustomError(edgeTune, edgeTune.finalize(taskId), "EdgeTuneWrongPhase",
      [taskId, Phase.Finished, Phase.Finalizable]);

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

    // Release stakes, refund the rest to the owner, and withdraw everything.
    for (const edge of edges) {
      await (await edgeTune.connect(edge).releaseStake(taskId)).wait();
      const earned = expected.filter(([who]) => who === edge.address).reduce((sum, [, , a]) => sum + a, 0n);
      const owed = await edgeTune.owed(edge.address);
      expect(owed).to.equal(stakes[edge.address] + earned);
      const before = await ethers.provider.getBalance(edge.address);
      const tx = await (await edgeTune.connect(edge).withdraw()).wait();
      expect(await ethers.provider.getBalance(edge.address)).to.equal(before + owed - tx.gasUsed * tx.gasPrice);
      await expectCustomError(edgeTune, edgeTune.connect(edge).withdraw(), "EdgeTuneNothingToWithdraw", [edge.address]);
    }
    await (await edgeTune.refundPool(taskId)).wait();
    expect(await edgeTune.owed(owner.address)).to.equal(pool - paid);
    await (await edgeTune.withdraw()).wait();
    expect(await ethers.provider.getBalance(address)).to.equal(0n);
  });
});
