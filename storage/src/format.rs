//! (skeleton: see docs/storage-plan.md; owned by its track)
