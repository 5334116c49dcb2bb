// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {ReentrancyGuard} from "@openzeppelin/contracts/utils/ReentrancyGuard.sol";
import {Address} from "@openzeppelin/contracts/utils/Address.sol";
import {SafeCast} from "@openzeppelin/contracts/utils/math/SafeCast.sol";
import {IEdgeTune} from "./IEdgeTune.sol";
import {WeightedMedian} from "./libraries/WeightedMedian.sol";

/// @title EdgeTune
/// @notice Coordinates federated LoRA fine-tuning tasks among mutually distrustful edge servers:
/// commit–reveal of updates, a stake-weighted commit–reveal vote on the aggregate, rewards by the
/// median of peers' Shapley scores (credited, then pulled with {withdraw}), and slashing.
/// @dev Funds are conserved: balance == Σ stakes + Σ owed + Σ task pools (undistributed).
contract EdgeTune is IEdgeTune, ReentrancyGuard {
    using SafeCast for uint256;

    /// @notice Largest task: bounds `finalize`, the only call whose gas grows with the edges.
    uint16 public constant MAX_EDGES = 64;
    uint16 private constant _BPS = 10_000;

    struct Task {
        address owner;
        uint16 round; // 0 while registering
        uint16 edgeCount;
        uint16 activeCount;
        bool cancelled;
        bool finished;
        uint64 registrationEnd;
        uint256 activeStake;
        uint256 pool; // not yet credited to anyone: future rounds + carry-over + slashed stake
        uint256 carry; // part of `pool` added to the next round's budget
        uint256 rewardPerRound;
        bytes32 globalHash;
        string globalCid;
        TaskConfig config;
    }

    struct Edge {
        uint128 stake;
        bool registered;
        bool active;
        bool exiting;
    }

    struct Round {
        uint64 commitEnd;
        uint64 revealEnd;
        uint64 voteCommitEnd;
        uint64 voteRevealEnd;
        uint16 commits;
        uint16 reveals;
        uint16 voteCommits;
        uint16 voteReveals;
        uint256 revealedStake;
        bytes32 leader;
        uint256 leaderStake;
        address[] committers;
        address[] revealers;
        address[] voters;
        address[] exits;
    }

    struct Submission {
        bytes32 updateCommitment;
        bytes32 updateHash;
        uint32 samples;
        uint16 revealIndex; // 1-based position in reveal order; 0 = not revealed
        bool voteRevealed;
        bool approve;
        bytes32 voteCommitment;
        bytes32 candidate;
        string cid;
        int32[] scores;
    }

    struct WinningBallots {
        address[] voters;
        uint128[] stakes;
        int32[][] scores;
    }

    struct Candidate {
        uint256 validMask;
        uint256 includedMask;
        bytes32 aggregateHash;
        string aggregateCid;
        uint256 approvingStake;
    }

    uint256 private _taskCount;
    mapping(uint256 taskId => Task) private _tasks;
    mapping(uint256 taskId => mapping(address edge => Edge)) private _edges;
    mapping(uint256 taskId => mapping(uint16 round => Round)) private _rounds;
    mapping(uint256 taskId => mapping(uint16 round => mapping(address edge => Submission))) private _submissions;
    mapping(uint256 taskId => mapping(uint16 round => mapping(bytes32 key => Candidate))) private _candidates;
    mapping(address account => uint256) private _owed;

    // ---------------------------------------------------------------- task lifecycle

    /// @notice Creates a task and funds its reward pool with `msg.value`.
    /// @dev Requirements: a non-zero pool divisible into `rounds`, every phase at least one block,
    /// 1 <= maxEdges <= MAX_EDGES, quorum above half so two candidates cannot both reach it.
    /// Emits {TaskCreated}.
    function createTask(TaskConfig calldata config) external payable returns (uint256 taskId) {
        _validateConfig(config);
        taskId = ++_taskCount;
        Task storage task = _tasks[taskId];
        task.owner = msg.sender;
        task.config = config;
        task.pool = msg.value;
        task.rewardPerRound = msg.value / config.rounds;
        task.globalHash = config.initialGlobalHash;
        task.globalCid = config.initialGlobalCid;
        task.registrationEnd = (block.number + config.registrationBlocks).toUint64();
        _openRound(taskId, 1, task.registrationEnd);
        emit TaskCreated(taskId, msg.sender, msg.value, config);
    }

    /// @notice Joins a task as an edge, staking `msg.value`.
    /// @dev Requirements: Registration phase, stake >= minStake, not yet registered, room left.
    /// Registration closes as soon as the task is full. Emits {EdgeRegistered}.
    function register(uint256 taskId) external payable {
        Task storage task = _existingTask(taskId);
        _requirePhase(taskId, Phase.Registration);
        if (_edges[taskId][msg.sender].registered) revert EdgeTuneAlreadyRegistered(taskId, msg.sender);
        if (msg.value < task.config.minStake) revert EdgeTuneStakeTooLow(taskId, msg.value, task.config.minStake);
        _edges[taskId][msg.sender] = Edge({stake: msg.value.toUint128(), registered: true, active: true, exiting: false});
        task.edgeCount += 1;
        task.activeCount += 1;
        task.activeStake += msg.value;
        emit EdgeRegistered(taskId, msg.sender, msg.value);
        if (task.edgeCount == task.config.maxEdges) _start(taskId);
    }

    /// @notice Ends registration now and opens round 1 (otherwise it opens at the deadline).
    /// @dev Requirements: caller is the task owner, Registration phase. Emits {TaskStarted}.
    function start(uint256 taskId) external {
        _requireOwner(taskId);
        _requirePhase(taskId, Phase.Registration);
        _start(taskId);
    }

    /// @notice Cancels a task before round 1 opens; stakes and the pool become releasable.
    /// @dev Requirements: caller is the task owner, Registration phase. Emits {TaskCancelled}.
    function cancel(uint256 taskId) external {
        _requireOwner(taskId);
        _requirePhase(taskId, Phase.Registration);
        _tasks[taskId].cancelled = true;
        emit TaskCancelled(taskId);
    }

    /// @notice Leaves a task. During registration the stake is released at once; later the edge
    /// keeps its duties for the current round and its stake unlocks once that round is finalized.
    /// @dev Requirements: an active edge of a running task. Emits {ExitRequested}.
    function requestExit(uint256 taskId) external {
        Task storage task = _existingTask(taskId);
        Edge storage edge = _requireActiveEdge(taskId);
        if (edge.exiting || task.finished || task.cancelled) revert EdgeTuneNotActiveEdge(taskId, msg.sender);
        Phase current = phase(taskId);
        if (current == Phase.Registration) {
            _deactivate(taskId, msg.sender);
        } else {
            edge.exiting = true;
            _rounds[taskId][task.round].exits.push(msg.sender);
        }
        emit ExitRequested(taskId, msg.sender, task.round);
    }

    /// @notice Moves the caller's remaining stake into its withdrawable balance.
    /// @dev Requirements: the edge is no longer active, or the task has finished or was cancelled.
    /// Emits {StakeReleased}.
    function releaseStake(uint256 taskId) external {
        Task storage task = _existingTask(taskId);
        Edge storage edge = _edges[taskId][msg.sender];
        if (edge.active && !task.finished && !task.cancelled) revert EdgeTuneStakeLocked(taskId, msg.sender);
        uint256 amount = edge.stake;
        if (amount == 0) revert EdgeTuneNothingToWithdraw(msg.sender);
        if (edge.active) _deactivate(taskId, msg.sender);
        edge.stake = 0;
        _owed[msg.sender] += amount;
        emit StakeReleased(taskId, msg.sender, amount);
    }

    /// @notice Credits the task's undistributed pool to its owner once the task is over.
    /// @dev Requirements: caller is the owner, the task has finished or was cancelled.
    /// Emits {PoolRefunded}.
    function refundPool(uint256 taskId) external {
        Task storage task = _requireOwner(taskId);
        if (!task.finished && !task.cancelled) revert EdgeTuneWrongPhase(taskId, phase(taskId), Phase.Finished);
        uint256 amount = task.pool;
        if (amount == 0) revert EdgeTuneNothingToRefund(taskId);
        task.pool = 0;
        task.carry = 0;
        _owed[msg.sender] += amount;
        emit PoolRefunded(taskId, msg.sender, amount);
    }

    /// @notice Pays the caller everything credited to it (rewards, released stakes, refunds).
    /// @dev Checks-effects-interactions behind a reentrancy lock. Emits {Withdrawn}.
    function withdraw() external nonReentrant {
        uint256 amount = _owed[msg.sender];
        if (amount == 0) revert EdgeTuneNothingToWithdraw(msg.sender);
        _owed[msg.sender] = 0;
        emit Withdrawn(msg.sender, amount);
        Address.sendValue(payable(msg.sender), amount);
    }

    // ---------------------------------------------------------------- round actions

    /// @notice Commits to an update: `commitment` is keccak256(abi.encode(chainid, this, taskId,
    /// round, sender, updateHash, cid, samples, salt)), see {updateCommitment}.
    /// @dev Requirements: UpdateCommit phase of `round`, an active edge, once per round.
    /// The phase closes as soon as every active edge has committed. Emits {UpdateCommitted}.
    function commitUpdate(uint256 taskId, uint16 round, bytes32 commitment) external {
        Round storage rd = _roundForAction(taskId, round, Phase.UpdateCommit);
        _requireActiveEdge(taskId);
        Submission storage sub = _submissions[taskId][round][msg.sender];
        if (sub.updateCommitment != 0) revert EdgeTuneAlreadyCommitted(taskId, round, msg.sender);
        sub.updateCommitment = commitment;
        rd.committers.push(msg.sender);
        rd.commits += 1;
        emit UpdateCommitted(taskId, round, msg.sender, commitment);
        if (rd.commits == _tasks[taskId].activeCount) _closeCommit(taskId, rd);
    }

    /// @notice Opens a committed update; it takes the next position in the reveal order, which
    /// indexes the bits of the votes' masks.
    /// @dev Requirements: UpdateReveal phase, a matching commitment, 0 < samples <= maxSamples.
    /// Emits {UpdateRevealed}.
    function revealUpdate(
        uint256 taskId,
        uint16 round,
        bytes32 updateHash,
        string calldata cid,
        uint32 samples,
        bytes32 salt
    ) external {
        Round storage rd = _roundForAction(taskId, round, Phase.UpdateReveal);
        Submission storage sub = _submissions[taskId][round][msg.sender];
        if (sub.updateCommitment == 0) revert EdgeTuneNotCommitted(taskId, round, msg.sender);
        if (sub.revealIndex != 0) revert EdgeTuneAlreadyRevealed(taskId, round, msg.sender);
        if (sub.updateCommitment != updateCommitment(taskId, round, msg.sender, updateHash, cid, samples, salt)) {
            revert EdgeTuneCommitmentMismatch(taskId, round, msg.sender);
        }
        uint32 maxSamples = _tasks[taskId].config.maxSamples;
        if (samples == 0 || samples > maxSamples) revert EdgeTuneSamplesOutOfRange(samples, maxSamples);
        rd.reveals += 1;
        rd.revealers.push(msg.sender);
        sub.revealIndex = rd.reveals;
        sub.updateHash = updateHash;
        sub.cid = cid;
        sub.samples = samples;
        emit UpdateRevealed(taskId, round, msg.sender, rd.reveals - 1, updateHash, cid, samples);
        if (rd.reveals == rd.commits) _closeReveal(taskId, rd);
    }

    /// @notice Commits to a vote, see {voteCommitment}.
    /// @dev Requirements: VoteCommit phase, an active edge, once per round. Emits {VoteCommitted}.
    function commitVote(uint256 taskId, uint16 round, bytes32 commitment) external {
        Round storage rd = _roundForAction(taskId, round, Phase.VoteCommit);
        _requireActiveEdge(taskId);
        Submission storage sub = _submissions[taskId][round][msg.sender];
        if (sub.voteCommitment != 0) revert EdgeTuneAlreadyCommitted(taskId, round, msg.sender);
        sub.voteCommitment = commitment;
        rd.voteCommits += 1;
        rd.voters.push(msg.sender);
        emit VoteCommitted(taskId, round, msg.sender, commitment);
        if (rd.voteCommits == _tasks[taskId].activeCount) _closeVoteCommit(taskId, rd);
    }

    /// @notice Opens a committed vote; its stake backs the candidate (validMask, includedMask,
    /// aggregateHash) when it approves.
    /// @dev Requirements: VoteReveal phase, a matching commitment, includedMask ⊆ validMask ⊆
    /// revealed updates, one score per revealed update. Emits {VoteRevealed}.
    function revealVote(uint256 taskId, uint16 round, Ballot calldata ballot, bytes32 salt) external {
        Round storage rd = _roundForAction(taskId, round, Phase.VoteReveal);
        Submission storage sub = _submissions[taskId][round][msg.sender];
        if (sub.voteCommitment == 0) revert EdgeTuneNotCommitted(taskId, round, msg.sender);
        if (sub.voteRevealed) revert EdgeTuneAlreadyRevealed(taskId, round, msg.sender);
        if (sub.voteCommitment != voteCommitment(taskId, round, msg.sender, ballot, salt)) {
            revert EdgeTuneCommitmentMismatch(taskId, round, msg.sender);
        }
        _checkBallot(rd.reveals, ballot);
        bytes32 key = keccak256(abi.encode(ballot.validMask, ballot.includedMask, ballot.aggregateHash));
        uint256 stake = _edges[taskId][msg.sender].stake;
        sub.voteRevealed = true;
        sub.approve = ballot.approve;
        sub.candidate = key;
        sub.scores = ballot.scores;
        rd.voteReveals += 1;
        rd.revealedStake += stake;
        if (ballot.approve) _support(_candidates[taskId][round][key], rd, key, stake, ballot);
        emit VoteRevealed(taskId, round, msg.sender, key, ballot);
        if (rd.voteReveals == rd.voteCommits) rd.voteRevealEnd = uint64(block.number - 1);
    }

    /// @notice Closes the current round (anyone may call): decides the vote, slashes, credits
    /// rewards, and opens the next round or finishes the task.
    /// @dev Requirements: Finalizable phase. Gas grows with the task's edges (bounded by
    /// MAX_EDGES). Emits {RoundFinalized}, {ContributionScored}, {RewardCredited}, {Slashed}.
    function finalize(uint256 taskId) external {
        _requirePhase(taskId, Phase.Finalizable);
        Task storage task = _tasks[taskId];
        uint16 round = task.round;
        Round storage rd = _rounds[taskId][round];
        Candidate storage winner = _candidates[taskId][round][rd.leader];
        uint256 budget = task.rewardPerRound + task.carry;
        bool accepted = _isAccepted(task, rd);
        uint256 paid = 0;
        if (accepted) {
            task.globalHash = winner.aggregateHash;
            task.globalCid = winner.aggregateCid;
            uint256 trainerPool = (budget * (_BPS - task.config.validatorShareBps)) / _BPS;
            WinningBallots memory winners = _winningBallots(taskId, round, rd);
            paid = _payTrainers(taskId, round, rd.revealers, winner.includedMask, trainerPool, winners);
            paid += _payValidators(taskId, round, winners.voters, budget - trainerPool);
        }
        task.pool -= paid;
        task.carry = budget - paid;
        emit RoundFinalized(
            taskId,
            round,
            accepted,
            accepted ? rd.leader : bytes32(0),
            task.globalHash,
            task.globalCid,
            rd.leaderStake,
            rd.revealedStake,
            budget,
            paid
        );
        _slashRound(taskId, round, rd, accepted ? winner.validMask : type(uint256).max);
        _processExits(taskId, rd);
        _advance(taskId, round);
    }

    // ---------------------------------------------------------------- views

    /// @notice The phase of a task, derived from the block number, deadlines and counts.
    function phase(uint256 taskId) public view returns (Phase) {
        Task storage task = _tasks[taskId];
        if (task.owner == address(0)) return Phase.None;
        if (task.cancelled) return Phase.Cancelled;
        if (task.finished) return Phase.Finished;
        if (block.number <= task.registrationEnd) return Phase.Registration;
        Round storage rd = _rounds[taskId][task.round];
        if (block.number <= rd.commitEnd) return Phase.UpdateCommit;
        if (rd.commits == 0) return Phase.Finalizable;
        if (block.number <= rd.revealEnd) return Phase.UpdateReveal;
        if (rd.reveals == 0) return Phase.Finalizable;
        if (block.number <= rd.voteCommitEnd) return Phase.VoteCommit;
        if (rd.voteCommits == 0) return Phase.Finalizable;
        if (block.number <= rd.voteRevealEnd) return Phase.VoteReveal;
        return Phase.Finalizable;
    }

    /// @notice The task's phase and `edge`'s own record in the current round, in one call.
    function status(uint256 taskId, address edge) external view returns (Status memory s) {
        Task storage task = _existingTask(taskId);
        Round storage rd = _rounds[taskId][task.round];
        Submission storage sub = _submissions[taskId][task.round][edge];
        Edge storage e = _edges[taskId][edge];
        s.phase = phase(taskId);
        s.round = task.round;
        s.phaseEnd = _phaseEnd(task, rd, s.phase);
        s.activeEdges = task.activeCount;
        (s.commits, s.reveals, s.voteCommits, s.voteReveals) = (rd.commits, rd.reveals, rd.voteCommits, rd.voteReveals);
        (s.globalHash, s.globalCid) = (task.globalHash, task.globalCid);
        (s.registered, s.active, s.stake) = (e.registered, e.active, e.stake);
        s.updateCommitted = sub.updateCommitment != 0;
        s.updateRevealed = sub.revealIndex != 0;
        s.voteCommitted = sub.voteCommitment != 0;
        s.voteRevealed = sub.voteRevealed;
        s.owed = _owed[edge];
    }

    /// @notice The task's configuration as created.
    function taskConfig(uint256 taskId) external view returns (TaskConfig memory) {
        return _existingTask(taskId).config;
    }

    /// @notice Accounting of a task: owner, undistributed pool, carry-over, active stake.
    function taskFunds(uint256 taskId)
        external
        view
        returns (address owner, uint256 pool, uint256 carry, uint256 rewardPerRound, uint256 activeStake)
    {
        Task storage task = _existingTask(taskId);
        return (task.owner, task.pool, task.carry, task.rewardPerRound, task.activeStake);
    }

    /// @notice The updates revealed in `round`, in reveal order (the order the masks index).
    function revealedUpdates(uint256 taskId, uint16 round) external view returns (RevealedUpdate[] memory updates) {
        address[] storage revealers = _rounds[taskId][round].revealers;
        updates = new RevealedUpdate[](revealers.length);
        for (uint256 i = 0; i < revealers.length; ++i) {
            Submission storage sub = _submissions[taskId][round][revealers[i]];
            updates[i] = RevealedUpdate(revealers[i], sub.updateHash, sub.cid, sub.samples);
        }
    }

    /// @notice The stake `edge` holds in a task (after any slashing).
    function stakeOf(uint256 taskId, address edge) external view returns (uint256) {
        return _edges[taskId][edge].stake;
    }

    /// @notice What `account` can withdraw now.
    function owed(address account) external view returns (uint256) {
        return _owed[account];
    }

    /// @notice The number of tasks created so far (ids run from 1).
    function taskCount() external view returns (uint256) {
        return _taskCount;
    }

    /// @notice The commitment {commitUpdate} expects; bound to chain, contract, task, round, sender.
    function updateCommitment(
        uint256 taskId,
        uint16 round,
        address edge,
        bytes32 updateHash,
        string calldata cid,
        uint32 samples,
        bytes32 salt
    ) public view returns (bytes32) {
        return keccak256(abi.encode(block.chainid, address(this), taskId, round, edge, updateHash, cid, samples, salt));
    }

    /// @notice The commitment {commitVote} expects; bound to chain, contract, task, round, sender.
    function voteCommitment(uint256 taskId, uint16 round, address edge, Ballot calldata ballot, bytes32 salt)
        public
        view
        returns (bytes32)
    {
        return keccak256(abi.encode(block.chainid, address(this), taskId, round, edge, ballot, salt));
    }

    // ---------------------------------------------------------------- internals: phases

    function _validateConfig(TaskConfig calldata c) private view {
        if (msg.value == 0 || msg.value < c.rounds) revert EdgeTuneInvalidConfig("pool");
        if (c.rounds == 0) revert EdgeTuneInvalidConfig("rounds");
        if (c.maxEdges == 0 || c.maxEdges > MAX_EDGES) revert EdgeTuneInvalidConfig("maxEdges");
        if (c.quorumBps <= _BPS / 2 || c.quorumBps > _BPS) revert EdgeTuneInvalidConfig("quorumBps");
        if (c.minTurnoutBps > _BPS) revert EdgeTuneInvalidConfig("minTurnoutBps");
        if (c.validatorShareBps > _BPS) revert EdgeTuneInvalidConfig("validatorShareBps");
        if (c.commitBlocks == 0 || c.revealBlocks == 0 || c.voteCommitBlocks == 0 || c.voteRevealBlocks == 0) {
            revert EdgeTuneInvalidConfig("phaseBlocks");
        }
        if (c.maxSamples == 0) revert EdgeTuneInvalidConfig("maxSamples");
        if (c.minStake == 0) revert EdgeTuneInvalidConfig("minStake");
        if (c.slashNonReveal > c.minStake || c.slashInvalid > c.minStake) revert EdgeTuneInvalidConfig("slash");
    }

    function _start(uint256 taskId) private {
        Task storage task = _tasks[taskId];
        task.registrationEnd = uint64(block.number - 1);
        _openRound(taskId, 1, task.registrationEnd);
        emit TaskStarted(taskId, task.activeCount, task.activeStake);
    }

    /// @dev Deadlines are stored once per round; an early close moves the later ones forward.
    function _openRound(uint256 taskId, uint16 round, uint64 startBlock) private {
        Task storage task = _tasks[taskId];
        task.round = round;
        Round storage rd = _rounds[taskId][round];
        rd.commitEnd = startBlock + task.config.commitBlocks;
        _closeCommitAt(rd, task.config, rd.commitEnd);
    }

    function _closeCommitAt(Round storage rd, TaskConfig storage c, uint64 commitEnd) private {
        rd.commitEnd = commitEnd;
        rd.revealEnd = commitEnd + c.revealBlocks;
        rd.voteCommitEnd = rd.revealEnd + c.voteCommitBlocks;
        rd.voteRevealEnd = rd.voteCommitEnd + c.voteRevealBlocks;
    }

    /// @dev Closing "at block.number - 1" makes the next phase start in the closing transaction's block.
    function _closeCommit(uint256 taskId, Round storage rd) private {
        _closeCommitAt(rd, _tasks[taskId].config, uint64(block.number - 1));
    }

    function _closeReveal(uint256 taskId, Round storage rd) private {
        TaskConfig storage c = _tasks[taskId].config;
        rd.revealEnd = uint64(block.number - 1);
        rd.voteCommitEnd = rd.revealEnd + c.voteCommitBlocks;
        rd.voteRevealEnd = rd.voteCommitEnd + c.voteRevealBlocks;
    }

    function _closeVoteCommit(uint256 taskId, Round storage rd) private {
        rd.voteCommitEnd = uint64(block.number - 1);
        rd.voteRevealEnd = rd.voteCommitEnd + _tasks[taskId].config.voteRevealBlocks;
    }

    function _phaseEnd(Task storage task, Round storage rd, Phase current) private view returns (uint64) {
        if (current == Phase.Registration) return task.registrationEnd;
        if (current == Phase.UpdateCommit) return rd.commitEnd;
        if (current == Phase.UpdateReveal) return rd.revealEnd;
        if (current == Phase.VoteCommit) return rd.voteCommitEnd;
        if (current == Phase.VoteReveal) return rd.voteRevealEnd;
        return 0;
    }

    function _advance(uint256 taskId, uint16 round) private {
        Task storage task = _tasks[taskId];
        if (round == task.config.rounds) {
            task.finished = true;
            emit TaskFinished(taskId, task.globalHash, task.globalCid);
        } else {
            _openRound(taskId, round + 1, uint64(block.number));
        }
    }

    // ---------------------------------------------------------------- internals: votes and rewards

    function _checkBallot(uint16 reveals, Ballot calldata ballot) private pure {
        uint256 revealedBits = (uint256(1) << reveals) - 1;
        if (ballot.validMask & ~revealedBits != 0 || ballot.includedMask & ~ballot.validMask != 0) {
            revert EdgeTuneInvalidMask(ballot.validMask, ballot.includedMask, reveals);
        }
        if (ballot.scores.length != reveals) revert EdgeTuneScoresLength(ballot.scores.length, reveals);
    }

    /// @dev Tracks the leading candidate as votes arrive, so `finalize` needs no search.
    /// A tie keeps the earlier leader; with quorum above half a tie can never reach quorum anyway.
    function _support(
        Candidate storage candidate,
        Round storage rd,
        bytes32 key,
        uint256 stake,
        Ballot calldata ballot
    ) private {
        if (candidate.approvingStake == 0) {
            (candidate.validMask, candidate.includedMask) = (ballot.validMask, ballot.includedMask);
            (candidate.aggregateHash, candidate.aggregateCid) = (ballot.aggregateHash, ballot.aggregateCid);
        }
        candidate.approvingStake += stake;
        if (candidate.approvingStake > rd.leaderStake) (rd.leader, rd.leaderStake) = (key, candidate.approvingStake);
    }

    function _isAccepted(Task storage task, Round storage rd) private view returns (bool) {
        if (rd.leaderStake == 0) return false;
        bool quorum = rd.leaderStake * _BPS >= rd.revealedStake * task.config.quorumBps;
        bool turnout = rd.revealedStake * _BPS >= task.activeStake * task.config.minTurnoutBps;
        return quorum && turnout;
    }

    /// @dev The voters that approved the winning candidate, with their stakes and scores, read
    /// from storage once: the medians below visit every (update, voter) pair.
    function _winningBallots(uint256 taskId, uint16 round, Round storage rd)
        private
        view
        returns (WinningBallots memory winners)
    {
        address[] memory voters = rd.voters;
        uint256 count = 0;
        winners.voters = new address[](voters.length);
        winners.stakes = new uint128[](voters.length);
        winners.scores = new int32[][](voters.length);
        for (uint256 v = 0; v < voters.length; ++v) {
            Submission storage sub = _submissions[taskId][round][voters[v]];
            if (!sub.voteRevealed || !sub.approve || sub.candidate != rd.leader) continue;
            winners.voters[count] = voters[v];
            winners.stakes[count] = _edges[taskId][voters[v]].stake;
            winners.scores[count] = sub.scores;
            ++count;
        }
        address[] memory filled = winners.voters;
        assembly ("memory-safe") {
            mstore(filled, count) // shrink to the entries filled; memory past it is simply unused
        }
    }

    /// @dev Pays each included update in proportion to its contribution: the stake-weighted median
    /// of the winning voters' scores for it, its own author's score excluded, floored at zero.
    function _payTrainers(
        uint256 taskId,
        uint16 round,
        address[] storage revealers,
        uint256 includedMask,
        uint256 pool,
        WinningBallots memory winners
    ) private returns (uint256 paid) {
        uint256[] memory contributions = new uint256[](revealers.length);
        uint256 total = 0;
        for (uint256 i = 0; i < revealers.length; ++i) {
            if (includedMask & (uint256(1) << i) == 0) continue;
            int32 median = _medianScore(revealers[i], i, winners);
            emit ContributionScored(taskId, round, revealers[i], median);
            if (median > 0) {
                contributions[i] = uint256(uint32(median));
                total += contributions[i];
            }
        }
        if (total == 0) return 0;
        for (uint256 i = 0; i < revealers.length; ++i) {
            if (contributions[i] == 0) continue;
            uint256 amount = (pool * contributions[i]) / total;
            paid += amount;
            _credit(taskId, round, revealers[i], RewardKind.Trainer, amount);
        }
    }

    function _medianScore(address author, uint256 index, WinningBallots memory winners)
        private
        pure
        returns (int32)
    {
        uint256[] memory packed = new uint256[](winners.voters.length);
        uint256 count = 0;
        for (uint256 v = 0; v < winners.voters.length; ++v) {
            if (winners.voters[v] == author) continue;
            packed[count++] = WeightedMedian.pack(winners.scores[v][index], winners.stakes[v]);
        }
        assembly ("memory-safe") {
            mstore(packed, count) // shrink to the entries filled; memory past it is simply unused
        }
        return WeightedMedian.lowerMedian(packed);
    }

    /// @dev Splits the validator pool equally among the voters that approved the winning candidate.
    function _payValidators(uint256 taskId, uint16 round, address[] memory winners, uint256 pool)
        private
        returns (uint256 paid)
    {
        if (winners.length == 0) return 0;
        uint256 share = pool / winners.length;
        for (uint256 v = 0; v < winners.length; ++v) {
            _credit(taskId, round, winners[v], RewardKind.Validator, share);
            paid += share;
        }
    }

    function _credit(uint256 taskId, uint16 round, address edge, RewardKind kind, uint256 amount) private {
        if (amount == 0) return;
        _owed[edge] += amount;
        emit RewardCredited(taskId, round, edge, kind, amount);
    }

    // ---------------------------------------------------------------- internals: slashing and exits

    /// @dev Slashes committed-but-unrevealed updates and votes, and revealed updates outside
    /// `validMask` (all-ones when the round was rejected: then only non-reveals are punished).
    /// Slashed stake joins the carry-over, so it rewards the honest edges of the next round.
    function _slashRound(uint256 taskId, uint16 round, Round storage rd, uint256 validMask) private {
        TaskConfig storage c = _tasks[taskId].config;
        for (uint256 i = 0; i < rd.committers.length; ++i) {
            address edge = rd.committers[i];
            uint16 index = _submissions[taskId][round][edge].revealIndex;
            if (index == 0) {
                _slash(taskId, round, edge, SlashReason.UpdateNotRevealed, c.slashNonReveal);
            } else if (validMask & (uint256(1) << (index - 1)) == 0) {
                _slash(taskId, round, edge, SlashReason.InvalidUpdate, c.slashInvalid);
            }
        }
        for (uint256 v = 0; v < rd.voters.length; ++v) {
            address voter = rd.voters[v];
            if (!_submissions[taskId][round][voter].voteRevealed) {
                _slash(taskId, round, voter, SlashReason.VoteNotRevealed, c.slashNonReveal);
            }
        }
    }

    function _slash(uint256 taskId, uint16 round, address edgeAddress, SlashReason reason, uint256 amount) private {
        Task storage task = _tasks[taskId];
        Edge storage edge = _edges[taskId][edgeAddress];
        uint256 taken = amount < edge.stake ? amount : edge.stake;
        if (taken == 0) return;
        edge.stake -= uint128(taken);
        if (edge.active) task.activeStake -= taken;
        task.pool += taken;
        task.carry += taken;
        emit Slashed(taskId, round, edgeAddress, reason, taken);
        if (edge.active && edge.stake < task.config.minStake) _deactivate(taskId, edgeAddress);
    }

    function _processExits(uint256 taskId, Round storage rd) private {
        for (uint256 i = 0; i < rd.exits.length; ++i) {
            if (_edges[taskId][rd.exits[i]].active) _deactivate(taskId, rd.exits[i]);
        }
    }

    function _deactivate(uint256 taskId, address edgeAddress) private {
        Task storage task = _tasks[taskId];
        Edge storage edge = _edges[taskId][edgeAddress];
        edge.active = false;
        task.activeCount -= 1;
        task.activeStake -= edge.stake;
    }

    // ---------------------------------------------------------------- internals: checks

    function _existingTask(uint256 taskId) private view returns (Task storage task) {
        task = _tasks[taskId];
        if (task.owner == address(0)) revert EdgeTuneUnknownTask(taskId);
    }

    function _requireOwner(uint256 taskId) private view returns (Task storage task) {
        task = _existingTask(taskId);
        if (task.owner != msg.sender) revert EdgeTuneNotTaskOwner(taskId, msg.sender);
    }

    function _requirePhase(uint256 taskId, Phase required) private view {
        _existingTask(taskId);
        Phase current = phase(taskId);
        if (current != required) revert EdgeTuneWrongPhase(taskId, current, required);
    }

    function _requireActiveEdge(uint256 taskId) private view returns (Edge storage edge) {
        edge = _edges[taskId][msg.sender];
        if (!edge.active) revert EdgeTuneNotActiveEdge(taskId, msg.sender);
    }

    function _roundForAction(uint256 taskId, uint16 round, Phase required) private view returns (Round storage) {
        _requirePhase(taskId, required);
        uint16 current = _tasks[taskId].round;
        if (round != current) revert EdgeTuneWrongRound(taskId, current, round);
        return _rounds[taskId][round];
    }
}
