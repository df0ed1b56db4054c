-- How many new passwords were screened against a link that sets one (invitation, reset). Screening
-- verifies the candidate against the password history (up to 25 argon2 verifications each), and a link is
-- only looked at until the password is accepted: unbounded, one link replayed from many addresses kept
-- the hasher full. A link is refused after LINK_SCREENINGS (links.ts) attempts; the owner asks for a new one.
ALTER TABLE user_tokens ADD COLUMN screenings integer NOT NULL DEFAULT 0;
