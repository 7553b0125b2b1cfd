-- Deterministic bulk load of the demo data, run inside PostgreSQL (no row crosses the wire).
-- :rows and :seed are inlined as literals by seed.py. Every value is a function of the row number
-- i and the seed, so the same seed always gives the same tables, whatever the session or server.
-- Accounts: 4 currencies; customers 1..4000 and merchants 4001..4400 have currency (id-1) % 4,
-- clearing accounts 4401..4404 one per currency. A ledger transaction's id is md5 of its
-- operation's idempotency key, the same rule the workload uses.

-- step: accounts
INSERT INTO accounts (id, external_ref, name, kind, currency, created_at)
SELECT a, kind || '-' || lpad(a::text, 6, '0'), initcap(kind) || ' ' || a, kind,
       (ARRAY['EUR','USD','GBP','SGD'])[1 + (a - 1) % 4],
       timestamptz '2025-01-01 00:00:00+00' + a * interval '1 minute'
FROM generate_series(1, 4404) a,
     LATERAL (SELECT CASE WHEN a <= 4000 THEN 'customer' WHEN a <= 4400 THEN 'merchant'
                          ELSE 'clearing' END AS kind) k;

-- step: source
CREATE TEMP VIEW seed_payments AS
SELECT i, key, md5(key)::uuid AS id, cur, payer, payee, 4401 + ci AS clearing, amount,
       CASE status WHEN 'partially_refunded' THEN round(amount / 2, 4)
                   WHEN 'refunded' THEN amount ELSE 0 END AS refunded,
       status, created
FROM (SELECT i, 'seed-' || :seed || '-' || i AS key, ci,
             (ARRAY['EUR','USD','GBP','SGD'])[1 + ci] AS cur,
             1 + ci + 4 * ((h / 4) % 1000) AS payer,
             4001 + ci + 4 * ((h / 4000) % 100) AS payee,
             (10000 + h2 % 999000000)::numeric(19,4) / 10000 AS amount,
             (CASE WHEN b < 10 THEN 'authorized' WHEN b < 25 THEN 'captured'
                   WHEN b < 75 THEN 'settled' WHEN b < 85 THEN 'partially_refunded'
                   WHEN b < 90 THEN 'refunded' ELSE 'expired' END)::payment_status AS status,
             timestamptz '2026-01-01 00:00:00+00' + i * interval '3 seconds' AS created
      FROM (SELECT i, h, h % 4 AS ci, (h * 1597334677 + 3266489917) % 4294967291 AS h2,
                   (h / 400000) % 100 AS b
            FROM (SELECT i, (i * 2654435761 + :seed * 7919 + 17) % 4294967291 AS h
                  FROM generate_series(1, :rows) i) g) x
      -- OFFSET 0 keeps the planner from inlining these expressions into every reference.
      OFFSET 0) s;

-- step: payments
INSERT INTO payments (id, idempotency_key, invoice_number, payer_account_id, payee_account_id,
                      amount, refunded_amount, currency, status, metadata, created_at, updated_at)
SELECT id, key, 'INV-' || lpad(i::text, 10, '0'), payer, payee, amount, refunded, cur, status,
       jsonb_build_object('channel', (ARRAY['card','bank_transfer','wallet'])[1 + i % 3],
                          'order_ref', 'ORD-' || i),
       created, created + CASE status WHEN 'authorized' THEN interval '0'
                                      WHEN 'captured' THEN interval '1 hour'
                                      ELSE interval '2 days' END
FROM seed_payments;

-- step: payment_holds
INSERT INTO payment_holds (payment_id, account_id, amount, expires_at)
SELECT id, payer, amount, created + interval '7 days' FROM seed_payments WHERE status = 'authorized';

-- step: ledger_lines
INSERT INTO ledger_lines (txn_id, line_no, payment_id, account_id, amount, currency, entry_type,
                          posted_at)
SELECT md5(CASE l.entry WHEN 'authorize' THEN s.key ELSE s.key || ':' || l.entry END)::uuid,
       l.line_no, s.id, l.account, l.amount, s.cur, l.entry, s.created + l.after
FROM seed_payments s
CROSS JOIN LATERAL (VALUES
    ('authorize', 1, s.payer, -s.amount, interval '0'),
    ('authorize', 2, s.clearing, s.amount, interval '0'),
    ('capture', 1, s.clearing, -s.amount, interval '1 hour'),
    ('capture', 2, s.payee, s.amount, interval '1 hour'),
    ('expire', 1, s.clearing, -s.amount, interval '7 days'),
    ('expire', 2, s.payer, s.amount, interval '7 days'),
    ('refund', 1, s.payee, -s.refunded, interval '2 days'),
    ('refund', 2, s.payer, s.refunded, interval '2 days')) l(entry, line_no, account, amount, after)
WHERE CASE l.entry WHEN 'authorize' THEN true
                   WHEN 'capture' THEN s.status NOT IN ('authorized', 'expired')
                   WHEN 'expire' THEN s.status = 'expired'
                   ELSE s.refunded > 0 END;

-- step: refunds
INSERT INTO refunds (id, payment_id, idempotency_key, amount, currency, reason, created_at)
SELECT md5(key || ':refund:row')::uuid, id, key || ':refund', refunded, cur, 'customer_request',
       created + interval '2 days'
FROM seed_payments WHERE refunded > 0;

-- step: settlement_staging
INSERT INTO settlement_staging (file_date, payment_id, idempotency_key, payee_account_id, amount,
                                currency, staged_at)
SELECT (created + interval '1 day')::date, id, key || ':settle', payee, amount, cur,
       created + interval '1 day'
FROM seed_payments WHERE status IN ('settled', 'partially_refunded', 'refunded');

-- step: payment_events
INSERT INTO payment_events (id, payment_id, idempotency_key, kind, payload, created_at)
SELECT (s.i - 1) * 5 + e.n, s.id, CASE e.kind WHEN 'authorize' THEN s.key ELSE s.key || ':' || e.kind END,
       e.kind, jsonb_build_object('amount', e.amount), s.created + e.after
FROM seed_payments s
CROSS JOIN LATERAL (VALUES
    (1, 'authorize', s.amount, interval '0', true),
    (2, 'capture', s.amount, interval '1 hour', s.status NOT IN ('authorized', 'expired')),
    (3, 'settle', s.amount, interval '1 day', s.status IN ('settled', 'partially_refunded', 'refunded')),
    (4, 'refund', s.refunded, interval '2 days', s.refunded > 0),
    (5, 'expire', s.amount, interval '7 days', s.status = 'expired')) e(n, kind, amount, after, happened)
WHERE e.happened;

-- step: sequences
SELECT setval(pg_get_serial_sequence('accounts', 'id'), 4404);
SELECT setval('invoice_number_seq', greatest(:rows, 1), :rows > 0);
SELECT setval(pg_get_serial_sequence('payment_events', 'id'), greatest(:rows * 5, 1), :rows > 0);
DROP VIEW seed_payments;
