-- The functions of 0003 and 0004 took the migrator's search_path ("<schema>, public") with SET search_path FROM
-- CURRENT, so a name they use that is not in the Wida schema (a table dropped by hand, a misspelling) was looked up
-- in public, where anyone allowed to create there could put one. Now they look in the Wida schema only, then
-- pg_temp (named, so that it comes last: left out, it would be searched first for tables). pg_catalog is searched
-- first all the same. retry_delay (0001) has no SET clause and keeps none: it uses only built-in functions, and a SET
-- clause would keep PostgreSQL from inlining it into the failure statements that call it.
-- Runs with search_path set to the Wida schema; current_schema() names it, quoted as needed by format().
SELECT set_config('search_path', format('%I, pg_temp', current_schema()), true);
ALTER FUNCTION release_dependents(bigint[], integer[]) SET search_path FROM CURRENT;
ALTER FUNCTION block_dependents(bigint[], bigint[]) SET search_path FROM CURRENT;
ALTER FUNCTION cancel_dependents(bigint[], text) SET search_path FROM CURRENT;
ALTER FUNCTION delete_edges(bigint[]) SET search_path FROM CURRENT;
ALTER FUNCTION unblock_dependents(bigint[]) SET search_path FROM CURRENT;
