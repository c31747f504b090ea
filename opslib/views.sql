-- Views of the platform's D1 schema (migration 003 and schema.sql). The backup
-- worker does not export views or triggers, so a restore recreates them from here;
-- the sandbox builds its D1 from opslib/sandbox/schema.sql followed by this file.

CREATE VIEW user_subscriptions_with_usage AS
SELECT
    u.id AS user_id,
    u.email,
    u.subscription_tier,
    s.id AS subscription_id,
    s.stripe_subscription_id,
    s.stripe_customer_id,
    s.plan_type,
    s.status AS subscription_status,
    s.current_period_start,
    s.current_period_end,
    s.cancel_at_period_end,
    COUNT(ut.id) AS manuscripts_this_period,
    CASE s.plan_type
        WHEN 'free' THEN 1
        WHEN 'pro' THEN 10
        WHEN 'enterprise' THEN 999999
        ELSE 1
    END AS monthly_limit
FROM users u
LEFT JOIN subscriptions s ON u.id = s.user_id AND s.status = 'active'
LEFT JOIN usage_tracking ut ON u.id = ut.user_id
    AND ut.billing_period_start = s.current_period_start
    AND ut.billing_period_end = s.current_period_end
GROUP BY u.id, s.id;

CREATE VIEW recent_activity AS
SELECT a.*, u.email
FROM audit_log a
JOIN users u ON a.user_id = u.id
WHERE a.timestamp > CAST(strftime('%s', 'now') AS INTEGER) - 86400
ORDER BY a.timestamp DESC;

CREATE VIEW pending_dmca AS
SELECT d.*, m.title AS manuscript_title, m.user_id AS owner_id
FROM dmca_requests d
JOIN manuscripts m ON d.manuscript_id = m.id
WHERE d.status = 'pending'
ORDER BY d.submitted_at ASC;

CREATE VIEW user_manuscripts AS
SELECT m.*, u.email AS owner_email
FROM manuscripts m
JOIN users u ON m.user_id = u.id;
