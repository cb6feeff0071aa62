-- Demo schema for the local stack; idempotent. Run by `writ up` as the admin role, only for a
-- config with `demo: true`, in the database of its first PostgreSQL worker.
DO $$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'writ_demo_read') THEN CREATE ROLE writ_demo_read LOGIN; END IF;
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'writ_demo_write') THEN CREATE ROLE writ_demo_write LOGIN; END IF;
END $$;
CREATE TABLE IF NOT EXISTS customers (
  id serial PRIMARY KEY,
  name text NOT NULL,
  email text NOT NULL,
  ssn text,
  plan text NOT NULL DEFAULT 'free'
);
INSERT INTO customers (name, email, ssn, plan)
SELECT * FROM (VALUES
  ('Alice Example', 'alice@example.com', '078-05-1120', 'pro'),
  ('Bob Example', 'bob@example.org', '219-09-9999', 'free'),
  ('Carol Example', 'carol@example.net', NULL, 'team')) v
WHERE NOT EXISTS (SELECT FROM customers);
-- The database the config names for the demo (writ_demo in deploy/local/writ.yaml).
DO $$ BEGIN
  EXECUTE format('GRANT CONNECT ON DATABASE %I TO writ_demo_read, writ_demo_write', current_database());
END $$;
GRANT USAGE ON SCHEMA public TO writ_demo_read, writ_demo_write;
GRANT SELECT ON ALL TABLES IN SCHEMA public TO writ_demo_read;
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO writ_demo_write;
GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO writ_demo_write;
