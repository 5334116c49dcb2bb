// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {SafeCast} from "@openzeppelin/contracts/utils/math/SafeCast.sol";
import {IEdgeTune} from "./IEdgeTune.sol";
import {RoundClock} from "./libraries/RoundClock.sol";
import {ScoreTally} from "./libraries/ScoreTally.sol";
import {ScoreTallier} from "./ScoreTallier.sol";
import {TaskRegistry} from "./TaskRegistry.sol";

/// @title EdgeTune
/// @notice Coordinates federated LoRA fine-tuning rounds among mutually distrustful edges
/// (protocol v2): commit–reveal of updates; stage 1, commit–reveal of every edge's Shapley
/// scores, tallied on chain into validity, medians and the included set; stage 2, commit–reveal
/// of attestations of the aggregate (hash and CID). {finalize} pays trainers by median score and
/// validators by agreement with the medians (credited, then pulled with {withdraw}), and slashes
/// absence, non-reveals and invalid updates, in rejected rounds too.
/// @dev Funds are conserved: balance == Σ stakes + Σ owed + Σ task pools (undistributed).
contract EdgeTune is TaskRegistry {
    using SafeCast for uint256;
    using RoundClock for RoundClock.Clock;

    /// @notice Bits of an edge's `done` mask in a round: update committed 1, revealed 2; scores
    /// committed 4, revealed 8; attestation committed 16, revealed 32. Each reveal bit is its
    /// commit bit << 1, so only the commit bits (and the last reveal bit) need names.
    uint8 internal constant STEP_UPDATE_COMMITTED = 1;
    uint8 internal constant STEP_SCORES_COMMITTED = 4;
    uint8 internal constant STEP_ATTEST_COMMITTED = 16;
    uint8 internal constant STEP_ATTEST_REVEALED = 32;

    struct Candidate {
        uint256 approvingStake;
        bytes32 aggregateHash;
        string aggregateCid;
    }

    ScoreTallier private immutable _tallier;
    mapping(uint256 taskId => mapping(uint16 round => mapping(bytes32 updateHash => bool))) private _revealedHashes;
    mapping(uint256 taskId => mapping(uint16 round => mapping(bytes32 key => Candidate))) private _candidates;

    constructor() {
        _tallier = new ScoreTallier();
    }

    // ---------------------------------------------------------------- round actions

    /// @notice Commits to this round's update, scores or attestation, as `stage` says; see
    /// {commitmentOf} for what `commitment` binds.
    /// @dev Requirements: `stage` is the current commit phase of `round`, an active edge, a
    /// non-zero commitment that differs from the edge's previous one, once per stage. The stage
    /// closes as soon as every active edge has committed. Emits {Committed}.
    function commit(uint256 taskId, uint16 round, Phase stage, bytes32 commitment) external {
        uint8 bit = _commitBit(stage);
        Round storage rd = _roundForAction(taskId, round, stage);
        _requireActiveEdge(taskId);
        if (commitment == 0) revert EdgeTuneZeroCommitment(taskId, round, msg.sender);
        Duty storage duty = _duties[taskId][round][msg.sender];
        if (duty.done & bit != 0) revert EdgeTuneAlreadyCommitted(taskId, round, msg.sender, stage);
        if (_commitments[taskId][round][msg.sender] == commitment) {
            revert EdgeTuneReusedCommitment(taskId, round, msg.sender, commitment);
        }
        _commitments[taskId][round][msg.sender] = commitment;
        duty.done |= bit;
        emit Committed(taskId, round, msg.sender, stage, commitment);
        if (_countCommit(rd.clock, stage) == _tasks[taskId].activeCount) {
            rd.clock.close(_stageIndex(stage), _lengths(taskId));
        }
    }

    /// @notice Opens a committed update; it takes the next position in the reveal order, which
    /// indexes the ballots' masks and scores.
    /// @dev Requirements: UpdateReveal phase, a matching commitment, a hash no earlier reveal of
    /// this round has used (a byte-identical copy is never a second contribution).
    /// Emits {UpdateRevealed}.
    function revealUpdate(uint256 taskId, uint16 round, bytes32 updateHash, string calldata cid, bytes32 salt)
        external
    {
        Round storage rd = _roundForAction(taskId, round, Phase.UpdateReveal);
        bytes32 payload = keccak256(abi.encode(updateHash, cid));
        Duty storage duty = _checkReveal(taskId, round, Phase.UpdateCommit, payload, salt);
        if (_revealedHashes[taskId][round][updateHash]) revert EdgeTuneDuplicateUpdate(taskId, round, updateHash);
        _revealedHashes[taskId][round][updateHash] = true;
        uint16 index = rd.clock.reveals++;
        duty.revealIndex = index + 1;
        emit UpdateRevealed(taskId, round, msg.sender, index, updateHash, cid);
        if (rd.clock.reveals == rd.clock.commits) rd.clock.close(1, _lengths(taskId));
    }

    /// @notice Opens committed scores (stage 1): which revealed updates are valid, which are
    /// near-copies of an earlier one, and one big-endian int32 score per update.
    /// @dev Requirements: ScoreReveal phase, a matching commitment, copyMask ⊆ validMask ⊆
    /// revealed updates, 4 bytes of scores per revealed update. Only a digest is stored; the
    /// ballot travels in the event and is handed back to {tally}. Emits {ScoresRevealed}.
    function revealScores(
        uint256 taskId,
        uint16 round,
        uint256 validMask,
        uint256 copyMask,
        bytes calldata scores,
        bytes32 salt
    ) external {
        Round storage rd = _roundForAction(taskId, round, Phase.ScoreReveal);
        uint16 reveals = rd.clock.reveals;
        if (validMask >> reveals != 0 || copyMask & ~validMask != 0) {
            revert EdgeTuneInvalidMask(validMask, copyMask, reveals);
        }
        if (scores.length != 4 * uint256(reveals)) revert EdgeTuneScoresLength(scores.length, 4 * uint256(reveals));
        bytes32 payload = keccak256(abi.encode(validMask, copyMask, scores));
        _checkReveal(taskId, round, Phase.ScoreCommit, payload, salt);
        rd.scoreDigest = keccak256(abi.encode(rd.scoreDigest, msg.sender, payload));
        rd.clock.scoreReveals += 1;
        emit ScoresRevealed(taskId, round, msg.sender, validMask, copyMask, scores);
        if (rd.clock.scoreReveals == rd.clock.scoreCommits) rd.clock.close(3, _lengths(taskId));
    }

    /// @notice Fixes stage 1 on chain (anyone may call): validity, copies, medians, the included
    /// set and every scorer's agreement, from all revealed ballots in reveal order.
    /// @dev Requirements: Tally phase; `ballots` are exactly the revealed ones, in order (checked
    /// against the digest kept by {revealScores}). Without turnout nothing is included.
    /// Emits {RoundTallied}.
    function tally(uint256 taskId, uint16 round, ScoreBallot[] calldata ballots) external {
        Round storage rd = _roundForAction(taskId, round, Phase.Tally);
        Task storage task = _tasks[taskId];
        if (ballots.length != rd.clock.scoreReveals) revert EdgeTuneBallotCount(ballots.length, rd.clock.scoreReveals);
        uint128[] memory stakes = new uint128[](ballots.length);
        bytes32 digest = 0;
        for (uint256 k = 0; k < ballots.length; ++k) {
            ScoreBallot calldata b = ballots[k];
            digest = keccak256(abi.encode(digest, b.scorer, keccak256(abi.encode(b.validMask, b.copyMask, b.scores))));
            stakes[k] = _edges[taskId][b.scorer].stake;
        }
        if (digest != rd.scoreDigest) revert EdgeTuneBallotsMismatch(taskId, round);
        ScoreTally.Outcome memory o = _tallier.tally(ballots, stakes, rd.clock.reveals, task.config.harmTolerance);
        if (o.scoreStake * _BPS < task.activeStake * task.config.minTurnoutBps) {
            // Too few scorers to decide anything: nothing included, and nobody judged invalid.
            (o.includedMask, o.validMask) = (0, (uint256(1) << rd.clock.reveals) - 1);
        }
        for (uint256 k = 0; k < ballots.length; ++k) {
            _duties[taskId][round][ballots[k].scorer].agreement = o.agreements[k];
        }
        (rd.validMask, rd.includedMask, rd.medians) = (o.validMask, o.includedMask, o.medians);
        rd.clock.tallied = true;
        rd.clock.anyIncluded = o.includedMask != 0;
        rd.clock.close(4, _lengths(taskId));
        emit RoundTallied(taskId, round, o.scoreStake, o.validMask, o.copyMask, o.includedMask, o.medians, o.agreements);
    }

    /// @notice Opens a committed attestation (stage 2): the aggregate of the included set this
    /// edge computed, and whether it approves it. Approving stake is counted per (hash, CID).
    /// @dev Requirements: AttestReveal phase, a matching commitment. Emits {AttestationRevealed}.
    function revealAttestation(
        uint256 taskId,
        uint16 round,
        bytes32 aggregateHash,
        string calldata aggregateCid,
        bool approve,
        bytes32 salt
    ) external {
        Round storage rd = _roundForAction(taskId, round, Phase.AttestReveal);
        bytes32 payload = keccak256(abi.encode(aggregateHash, aggregateCid, approve));
        _checkReveal(taskId, round, Phase.AttestCommit, payload, salt);
        bytes32 key = keccak256(abi.encode(aggregateHash, aggregateCid));
        uint256 stake = _edges[taskId][msg.sender].stake;
        rd.attestStake += stake;
        rd.clock.attestReveals += 1;
        if (approve) {
            _support(_candidates[taskId][round][key], rd, key, stake, aggregateHash, aggregateCid);
            _commitments[taskId][round][msg.sender] = key; // what {finalize} pays validators by
        }
        emit AttestationRevealed(taskId, round, msg.sender, key, aggregateHash, aggregateCid, approve);
        if (rd.clock.attestReveals == rd.clock.attestCommits) rd.clock.close(6, _lengths(taskId));
    }

    /// @notice Closes the current round (anyone may call): decides the attestation vote, credits
    /// rewards, slashes, processes exits, and opens the next round or finishes the task.
    /// @dev Requirements: Finalizable phase. Gas grows linearly with the task's edges.
    /// Emits {RoundFinalized}, {RewardCredited}, {Slashed}.
    function finalize(uint256 taskId) external {
        _requirePhase(taskId, Phase.Finalizable);
        Task storage task = _tasks[taskId];
        uint16 round = task.round;
        Round storage rd = _rounds[taskId][round];
        uint256 budget = task.rewardPerRound + task.carry;
        task.carry = 0; // now part of `budget`; the slashes of {_settle} start the next carry-over
        bool accepted = _isAccepted(task, rd);
        if (accepted) {
            Candidate storage winner = _candidates[taskId][round][rd.leader];
            (task.globalHash, task.globalCid) = (winner.aggregateHash, winner.aggregateCid);
        }
        uint256 paid = _settle(taskId, round, accepted ? budget : 0);
        task.pool -= paid;
        task.carry += budget - paid;
        emit RoundFinalized(
            taskId,
            round,
            accepted,
            accepted ? rd.leader : bytes32(0),
            task.globalHash,
            task.globalCid,
            rd.leaderStake,
            rd.attestStake,
            budget,
            paid
        );
        _advance(taskId, round);
    }

    // ---------------------------------------------------------------- views

    /// @notice The commitment {commit} expects: bound to chain, contract, task, round, stage and
    /// sender. `payload` is keccak256(abi.encode(...)) of what the stage's reveal opens:
    /// (updateHash, cid), (validMask, copyMask, scores) or (aggregateHash, aggregateCid, approve).
    function commitmentOf(uint256 taskId, uint16 round, Phase stage, address edge, bytes32 payload, bytes32 salt)
        public
        view
        returns (bytes32)
    {
        return keccak256(abi.encode(block.chainid, address(this), taskId, round, stage, edge, payload, salt));
    }

    // ---------------------------------------------------------------- internals: stages

    function _commitBit(Phase stage) private pure returns (uint8) {
        if (stage == Phase.UpdateCommit) return STEP_UPDATE_COMMITTED;
        if (stage == Phase.ScoreCommit) return STEP_SCORES_COMMITTED;
        if (stage == Phase.AttestCommit) return STEP_ATTEST_COMMITTED;
        revert EdgeTuneNotCommitPhase(stage);
    }

    /// @dev Stage indices of RoundClock: commit phases are 0, 2 and 5.
    function _stageIndex(Phase stage) private pure returns (uint8) {
        if (stage == Phase.UpdateCommit) return 0;
        return stage == Phase.ScoreCommit ? 2 : 5;
    }

    function _countCommit(RoundClock.Clock storage clock, Phase stage) private returns (uint16) {
        if (stage == Phase.UpdateCommit) return ++clock.commits;
        if (stage == Phase.ScoreCommit) return ++clock.scoreCommits;
        return ++clock.attestCommits;
    }

    /// @dev Checks the caller committed in `stage`, has not revealed, and that (payload, salt)
    /// open its commitment; marks the reveal done.
    function _checkReveal(uint256 taskId, uint16 round, Phase stage, bytes32 payload, bytes32 salt)
        private
        returns (Duty storage duty)
    {
        uint8 bit = _commitBit(stage);
        duty = _duties[taskId][round][msg.sender];
        if (duty.done & bit == 0) revert EdgeTuneNotCommitted(taskId, round, msg.sender, stage);
        if (duty.done & (bit << 1) != 0) revert EdgeTuneAlreadyRevealed(taskId, round, msg.sender, stage);
        if (_commitments[taskId][round][msg.sender] != commitmentOf(taskId, round, stage, msg.sender, payload, salt)) {
            revert EdgeTuneCommitmentMismatch(taskId, round, msg.sender, stage);
        }
        duty.done |= bit << 1;
    }

    /// @dev Tracks the leading candidate as attestations arrive, so {finalize} needs no search.
    /// A tie keeps the earlier leader; with quorum above half a tie can never reach quorum anyway.
    function _support(
        Candidate storage candidate,
        Round storage rd,
        bytes32 key,
        uint256 stake,
        bytes32 aggregateHash,
        string calldata aggregateCid
    ) private {
        if (candidate.approvingStake == 0) (candidate.aggregateHash, candidate.aggregateCid) = (aggregateHash, aggregateCid);
        candidate.approvingStake += stake;
        if (candidate.approvingStake > rd.leaderStake) (rd.leader, rd.leaderStake) = (key, candidate.approvingStake);
    }

    function _isAccepted(Task storage task, Round storage rd) private view returns (bool) {
        if (rd.leaderStake == 0) return false;
        bool quorum = rd.leaderStake * _BPS >= rd.attestStake * task.config.quorumBps;
        bool turnout = rd.attestStake * _BPS >= task.activeStake * task.config.minTurnoutBps;
        return quorum && turnout;
    }

    // ---------------------------------------------------------------- internals: settlement

    /// @dev What one round pays out, and the totals each share is a fraction of.
    struct Payout {
        uint256 trainerPool;
        uint256 validatorPool;
        uint256 medianTotal;
        uint256 agreementTotal;
    }

    /// @dev One pass over the task's edges after totals are known: credits each included
    /// update in proportion to its positive median, each validator that approved the winner in
    /// proportion to its agreement, slashes what the round's duties say, and processes exits.
    /// `budget` is 0 for a rejected round. Returns the amount credited.
    function _settle(uint256 taskId, uint16 round, uint256 budget) private returns (uint256 paid) {
        Task storage task = _tasks[taskId];
        uint256 trainerPool = (budget * (_BPS - task.config.validatorShareBps)) / _BPS;
        (uint256 medianTotal, uint256 agreementTotal) = _rewardTotals(taskId, round);
        Payout memory payout = Payout(trainerPool, budget - trainerPool, medianTotal, agreementTotal);
        address[] storage edges = task.edges;
        for (uint256 i = 0; i < edges.length; ++i) {
            if (_edges[taskId][edges[i]].active) paid += _settleEdge(taskId, round, edges[i], budget > 0, payout);
        }
    }

    /// @dev An edge that skipped or withheld anything this round is paid nothing for it: a ballot
    /// withheld after seeing the others' moves the remaining medians, and this way that lever
    /// can never pay the one who pulls it.
    function _settleEdge(uint256 taskId, uint16 round, address account, bool rewarded, Payout memory payout)
        private
        returns (uint256 paid)
    {
        Duty storage duty = _duties[taskId][round][account];
        (bool absent, bool unrevealed) = _lapses(_rounds[taskId][round], duty.done);
        if (rewarded && !absent && !unrevealed) paid = _pay(taskId, round, account, duty, payout);
        _slashDuties(taskId, round, account, duty, absent, unrevealed);
        Edge storage edge = _edges[taskId][account];
        if (edge.exiting && edge.active) _deactivate(taskId, account);
    }

    function _pay(uint256 taskId, uint16 round, address account, Duty storage duty, Payout memory payout)
        private
        returns (uint256 paid)
    {
        uint256 median = _positiveMedian(_rounds[taskId][round], duty);
        if (median > 0) {
            paid += _credit(taskId, round, account, RewardKind.Trainer, (payout.trainerPool * median) / payout.medianTotal);
        }
        if (duty.agreement > 0 && _approvedWinner(taskId, round, account, duty)) {
            uint256 amount = (payout.validatorPool * duty.agreement) / payout.agreementTotal;
            paid += _credit(taskId, round, account, RewardKind.Validator, amount);
        }
    }

    function _rewardTotals(uint256 taskId, uint16 round) private view returns (uint256 medianTotal, uint256 agreementTotal) {
        Round storage rd = _rounds[taskId][round];
        address[] storage edges = _tasks[taskId].edges;
        for (uint256 i = 0; i < edges.length; ++i) {
            if (!_edges[taskId][edges[i]].active) continue;
            Duty storage duty = _duties[taskId][round][edges[i]];
            medianTotal += _positiveMedian(rd, duty);
            if (_approvedWinner(taskId, round, edges[i], duty)) agreementTotal += duty.agreement;
        }
    }

    /// @dev An included update's median score, floored at zero; 0 for anything else.
    function _positiveMedian(Round storage rd, Duty storage duty) private view returns (uint256) {
        if (duty.revealIndex == 0) return 0;
        uint256 index = duty.revealIndex - 1;
        if (rd.includedMask & (uint256(1) << index) == 0) return 0;
        int32 median = rd.medians[index];
        return median > 0 ? uint256(uint32(median)) : 0;
    }

    function _approvedWinner(uint256 taskId, uint16 round, address account, Duty storage duty)
        private
        view
        returns (bool)
    {
        bytes32 leader = _rounds[taskId][round].leader;
        return duty.done & STEP_ATTEST_REVEALED != 0 && leader != 0 && _commitments[taskId][round][account] == leader;
    }

    /// @dev Absence (an opened commit stage the edge skipped) and non-reveal (a commitment it
    /// never opened), from the edge's `done` steps.
    function _lapses(Round storage rd, uint8 done) private view returns (bool absent, bool unrevealed) {
        // Commit stages the round opened: updates always, scores once an update was revealed,
        // attestations once the tally included something.
        absent = done & STEP_UPDATE_COMMITTED == 0 || (done & STEP_SCORES_COMMITTED == 0 && rd.clock.reveals > 0)
            || (done & STEP_ATTEST_COMMITTED == 0 && rd.clock.tallied && rd.clock.anyIncluded);
        // Commit bits are 1, 4, 16 and each reveal bit sits one above its commit bit.
        uint8 committed = done & 0x15;
        unrevealed = committed & ~((done >> 1) & 0x15) != 0;
    }

    /// @dev Absence, non-reveal and an update the stage-1 majority found invalid: each is
    /// slashed once per round.
    function _slashDuties(uint256 taskId, uint16 round, address account, Duty storage duty, bool absent, bool unrevealed)
        private
    {
        Round storage rd = _rounds[taskId][round];
        TaskConfig storage c = _tasks[taskId].config;
        if (absent) _slash(taskId, round, account, SlashReason.Absent, c.slashAbsent);
        if (unrevealed) _slash(taskId, round, account, SlashReason.NotRevealed, c.slashNonReveal);
        if (duty.revealIndex != 0 && rd.clock.tallied && rd.validMask & (uint256(1) << (duty.revealIndex - 1)) == 0) {
            _slash(taskId, round, account, SlashReason.InvalidUpdate, c.slashInvalid);
        }
    }

    function _credit(uint256 taskId, uint16 round, address edge, RewardKind kind, uint256 amount)
        private
        returns (uint256)
    {
        if (amount == 0) return 0;
        _owed[edge] += amount;
        emit RewardCredited(taskId, round, edge, kind, amount);
        return amount;
    }

    function _lengths(uint256 taskId) private view returns (uint32[7] memory) {
        return RoundClock.lengths(_tasks[taskId].config);
    }
}
