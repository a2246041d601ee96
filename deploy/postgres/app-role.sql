-- The application's PostgreSQL role: it reads and writes rows but owns nothing. Migrations run
-- as the owner with ALERTSHARE_DATABASE_APP_ROLE naming this role, and revoke UPDATE, DELETE and
-- TRUNCATE on the audit tables from it; archival (alertshare audit archive) runs as the owner.
--
-- Run as a superuser on the alertshare database, before the first migration (the privileges
-- below are granted on tables as the owner creates them; tables that exist already are left as
-- they are, so running this again never hands back what a migration revoked):
--   APP_DB_PASSWORD=... psql -v app_role=alertshare_app -v owner=alertshare \
--     -v database=alertshare -f deploy/postgres/app-role.sql
-- The password is read from the environment, not the command line (psql 15 or later).
\set ON_ERROR_STOP on
\getenv app_password APP_DB_PASSWORD
\if :{?app_password}
\else
DO $$ BEGIN RAISE EXCEPTION 'set APP_DB_PASSWORD to the application role''s password'; END $$;
\endif

SELECT format('CREATE ROLE %I LOGIN', :'app_role')
 WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'app_role') \gexec
ALTER ROLE :"app_role" WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD :'app_password';
GRANT CONNECT ON DATABASE :"database" TO :"app_role";
GRANT USAGE ON SCHEMA public TO :"app_role";
ALTER DEFAULT PRIVILEGES FOR ROLE :"owner" IN SCHEMA public
    GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO :"app_role";
ALTER DEFAULT PRIVILEGES FOR ROLE :"owner" IN SCHEMA public
    GRANT USAGE, SELECT ON SEQUENCES TO :"app_role";
