-- D1 schema of the manuscript platform as it stood at schema version 6
-- (PLATFORM.md section 1): schema.sql, migration 003 (payment tables),
-- 004 (subscription_tier), 005 (full_name), 006 (password_reset_tokens),
-- 007 (composite indexes) and the backup worker's lazily created backup_logs.
-- Ids are UUID TEXT, times are Unix seconds unless noted, booleans 0/1,
-- money in cents. Foreign keys are enforced, as D1 does by default.

PRAGMA foreign_keys = ON;

CREATE TABLE users (
    id TEXT PRIMARY KEY,
    email TEXT UNIQUE NOT NULL,
    password_hash TEXT NOT NULL,
    full_name TEXT,
    role TEXT DEFAULT 'author',
    subscription_tier TEXT DEFAULT 'FREE',
    created_at INTEGER NOT NULL,
    last_login INTEGER,
    email_verified INTEGER DEFAULT 0
);
CREATE INDEX idx_users_email ON users(email);
CREATE INDEX idx_users_tier ON users(subscription_tier);

CREATE TABLE manuscripts (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    title TEXT NOT NULL,
    r2_key TEXT NOT NULL,
    file_hash TEXT NOT NULL,
    status TEXT DEFAULT 'draft',
    genre TEXT,
    word_count INTEGER,
    file_type TEXT,
    metadata TEXT,
    uploaded_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    flagged_for_review INTEGER DEFAULT 0,
    FOREIGN KEY (user_id) REFERENCES users(id) ON DELETE CASCADE
);
CREATE INDEX idx_manuscripts_user ON manuscripts(user_id);
CREATE INDEX idx_manuscripts_hash ON manuscripts(file_hash);
CREATE INDEX idx_manuscripts_status ON manuscripts(status);
CREATE INDEX idx_manuscripts_created ON manuscripts(uploaded_at DESC);
CREATE INDEX idx_manuscripts_user_status_date
    ON manuscripts(user_id, status, uploaded_at DESC);
CREATE INDEX idx_manuscripts_user_genre_date
    ON manuscripts(user_id, genre, uploaded_at DESC);

CREATE TABLE verification_tokens (
    token TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    token_type TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    used INTEGER DEFAULT 0,
    FOREIGN KEY (user_id) REFERENCES users(id) ON DELETE CASCADE
);
CREATE INDEX idx_tokens_expires ON verification_tokens(expires_at);

CREATE TABLE sessions (
    session_id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    ip_address TEXT,
    user_agent TEXT,
    FOREIGN KEY (user_id) REFERENCES users(id) ON DELETE CASCADE
);
CREATE INDEX idx_sessions_expires ON sessions(expires_at);

CREATE TABLE audit_log (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    action TEXT NOT NULL,
    resource_type TEXT NOT NULL,
    resource_id TEXT NOT NULL,
    timestamp INTEGER NOT NULL,
    ip_address TEXT,
    user_agent TEXT,
    metadata TEXT,
    FOREIGN KEY (user_id) REFERENCES users(id) ON DELETE CASCADE
);
CREATE INDEX idx_audit_user ON audit_log(user_id);
CREATE INDEX idx_audit_timestamp ON audit_log(timestamp DESC);
CREATE INDEX idx_audit_action ON audit_log(action);
CREATE INDEX idx_audit_user_timestamp ON audit_log(user_id, timestamp DESC, action);

CREATE TABLE dmca_requests (
    id TEXT PRIMARY KEY,
    manuscript_id TEXT NOT NULL,
    requester_name TEXT NOT NULL,
    requester_email TEXT NOT NULL,
    requester_company TEXT,
    claim_details TEXT NOT NULL,
    original_work_url TEXT,
    good_faith_attestation INTEGER NOT NULL,
    accuracy_attestation INTEGER NOT NULL,
    digital_signature TEXT NOT NULL,
    submitted_at INTEGER NOT NULL,
    status TEXT DEFAULT 'pending',
    resolution_notes TEXT,
    resolved_at INTEGER,
    resolved_by TEXT,
    FOREIGN KEY (manuscript_id) REFERENCES manuscripts(id) ON DELETE CASCADE
);
CREATE INDEX idx_dmca_status ON dmca_requests(status);
CREATE INDEX idx_dmca_submitted ON dmca_requests(submitted_at DESC);
CREATE INDEX idx_dmca_status_submitted ON dmca_requests(status, submitted_at DESC);

CREATE TABLE submissions (
    id TEXT PRIMARY KEY,
    manuscript_id TEXT NOT NULL,
    publisher_id TEXT NOT NULL,
    status TEXT DEFAULT 'pending',
    submitted_at INTEGER NOT NULL,
    notes TEXT,
    response_notes TEXT,
    responded_at INTEGER,
    FOREIGN KEY (manuscript_id) REFERENCES manuscripts(id) ON DELETE CASCADE,
    FOREIGN KEY (publisher_id) REFERENCES users(id) ON DELETE CASCADE
);

CREATE TABLE schema_version (
    version INTEGER PRIMARY KEY,
    applied_at INTEGER NOT NULL,
    description TEXT
);

CREATE TABLE subscriptions (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    stripe_subscription_id TEXT UNIQUE,
    stripe_customer_id TEXT NOT NULL,
    plan_type TEXT NOT NULL,
    status TEXT NOT NULL,
    current_period_start INTEGER NOT NULL,
    current_period_end INTEGER NOT NULL,
    cancel_at_period_end INTEGER DEFAULT 0,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    FOREIGN KEY (user_id) REFERENCES users(id) ON DELETE CASCADE
);
CREATE INDEX idx_subscriptions_user ON subscriptions(user_id);
CREATE INDEX idx_subscriptions_stripe_customer ON subscriptions(stripe_customer_id);
CREATE INDEX idx_subscriptions_status ON subscriptions(status);

CREATE TABLE payment_history (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    subscription_id TEXT,
    stripe_payment_intent_id TEXT,
    stripe_invoice_id TEXT,
    amount INTEGER NOT NULL,
    currency TEXT DEFAULT 'usd',
    payment_type TEXT NOT NULL,
    status TEXT NOT NULL,
    description TEXT,
    metadata TEXT,
    created_at INTEGER NOT NULL,
    FOREIGN KEY (user_id) REFERENCES users(id) ON DELETE CASCADE,
    FOREIGN KEY (subscription_id) REFERENCES subscriptions(id) ON DELETE SET NULL
);
CREATE INDEX idx_payment_history_user ON payment_history(user_id);
CREATE INDEX idx_payment_history_created ON payment_history(created_at DESC);
CREATE INDEX idx_payment_history_status ON payment_history(status);

CREATE TABLE usage_tracking (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    subscription_id TEXT,
    manuscript_id TEXT NOT NULL,
    analysis_type TEXT NOT NULL,
    assets_generated INTEGER DEFAULT 0,
    credits_used INTEGER DEFAULT 1,
    timestamp INTEGER NOT NULL,
    billing_period_start INTEGER NOT NULL,
    billing_period_end INTEGER NOT NULL,
    FOREIGN KEY (user_id) REFERENCES users(id) ON DELETE CASCADE,
    FOREIGN KEY (subscription_id) REFERENCES subscriptions(id) ON DELETE SET NULL,
    FOREIGN KEY (manuscript_id) REFERENCES manuscripts(id) ON DELETE CASCADE
);
CREATE INDEX idx_usage_tracking_user ON usage_tracking(user_id);
CREATE INDEX idx_usage_tracking_period
    ON usage_tracking(billing_period_start, billing_period_end);
CREATE INDEX idx_usage_tracking_timestamp ON usage_tracking(timestamp DESC);

-- Only the unrouted JWT password-reset module writes this table; times are ISO text.
CREATE TABLE password_reset_tokens (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    token_hash TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    created_at TEXT NOT NULL,
    used_at TEXT,
    FOREIGN KEY (user_id) REFERENCES users(id) ON DELETE CASCADE
);
CREATE INDEX idx_password_reset_tokens_hash ON password_reset_tokens(token_hash);
CREATE INDEX idx_password_reset_tokens_user ON password_reset_tokens(user_id);
CREATE INDEX idx_password_reset_tokens_expires ON password_reset_tokens(expires_at);

-- Created lazily by the backup worker on its first run; no indexes.
CREATE TABLE backup_logs (
    id TEXT PRIMARY KEY,
    filename TEXT,
    backup_date TEXT,
    timestamp TEXT,
    original_size INTEGER,
    compressed_size INTEGER,
    duration INTEGER,
    status TEXT,
    error TEXT,
    stats TEXT,
    created_at INTEGER
);

-- The views follow from opslib/views.sql (read_schema joins the two).
