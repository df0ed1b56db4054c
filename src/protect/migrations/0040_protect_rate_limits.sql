-- Rate-limit counters when RATE_LIMIT_STORE=postgres (or auto on PostgreSQL without Redis): the row layout
-- rate-limiter-flexible's RateLimiterPostgres reads and writes. Keys name a limiter and a client address
-- or a hashed account; they are not tenant data, so the table is platform-wide (no row-level security).
CREATE TABLE protect_rate_limits (
  key varchar(255) PRIMARY KEY,
  points integer NOT NULL DEFAULT 0,
  expire bigint
);
CREATE INDEX protect_rate_limits_expire ON protect_rate_limits (expire);
GRANT SELECT, INSERT, UPDATE, DELETE ON protect_rate_limits TO rampart_app;
