-- Which claim of a partition may write it. A runner claims a partition on
-- the session that took the partition's advisory lock, in the same
-- statement, with a fresh epoch; every batch locks the owner row (FOR
-- SHARE) and commits only if the row still holds the epoch its worker was
-- started with. A claim therefore waits for a batch that has checked, and a
-- batch that checks after a claim finds another epoch: a runner that lost
-- its lock can never commit once another runner owns the partition.
CREATE SEQUENCE projection_owner_epochs;

CREATE TABLE projection_owners (
    projection text    NOT NULL,
    partition  integer NOT NULL CHECK (partition >= 0),
    epoch      bigint  NOT NULL,
    PRIMARY KEY (projection, partition)
);
