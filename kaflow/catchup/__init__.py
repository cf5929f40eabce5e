"""Follower catch-up: copy the records a node missed from another member.

A node that was down while the others compacted their Raft log past its
position receives the leader's snapshot, which contains metadata only. Its
partition logs then end before the end offsets the snapshot records. This
package tracks those gaps (:mod:`.gaps`), brings the logs in line with an
installed snapshot (:mod:`.reconcile`), serves raw batches to peers
(:mod:`.serving`), fetches and verifies them (:mod:`.client`,
:mod:`.backfill`) and runs the copy in the background (:mod:`.task`).
docs/catchup.md describes the design.
"""
