-- Keys and indexes of the demo schema, built after the bulk load (once, not row by row).
-- Steps of one table run on the connection that loaded it; foreign_keys runs last, when every
-- table is complete.

-- step: accounts
ALTER TABLE accounts ADD PRIMARY KEY (id);
ALTER TABLE accounts ADD UNIQUE (external_ref);

-- step: payments
ALTER TABLE payments ADD PRIMARY KEY (id);
ALTER TABLE payments ADD CONSTRAINT payments_idempotency_key_key UNIQUE (idempotency_key);
ALTER TABLE payments ADD CONSTRAINT payments_invoice_number_key UNIQUE (invoice_number);
CREATE INDEX payments_status_created_idx ON payments (status, created_at);

-- step: payment_holds
ALTER TABLE payment_holds ADD PRIMARY KEY (payment_id);

-- step: ledger_lines
ALTER TABLE ledger_lines ADD PRIMARY KEY (txn_id, line_no);
CREATE INDEX ledger_lines_payment_idx ON ledger_lines (payment_id);

-- step: refunds
ALTER TABLE refunds ADD PRIMARY KEY (id);
ALTER TABLE refunds ADD CONSTRAINT refunds_idempotency_key_key UNIQUE (idempotency_key);

-- step: payment_events
ALTER TABLE payment_events ADD PRIMARY KEY (id);
CREATE INDEX payment_events_idempotency_key_idx ON payment_events (idempotency_key);
CREATE INDEX payment_events_payment_idx ON payment_events (payment_id);

-- step: settlement_staging
CREATE INDEX settlement_staging_idempotency_key_idx ON settlement_staging (idempotency_key);

-- step: foreign_keys
ALTER TABLE payments ADD FOREIGN KEY (payer_account_id) REFERENCES accounts (id),
                     ADD FOREIGN KEY (payee_account_id) REFERENCES accounts (id);
ALTER TABLE payment_holds ADD FOREIGN KEY (payment_id) REFERENCES payments (id);
ALTER TABLE ledger_lines ADD FOREIGN KEY (payment_id) REFERENCES payments (id),
                         ADD FOREIGN KEY (account_id) REFERENCES accounts (id);
ALTER TABLE refunds ADD FOREIGN KEY (payment_id) REFERENCES payments (id);
