-- Back to the setting builds before 0008 gave these functions (their migrator's search_path): the Wida schema, then
-- public. Runs with search_path set to the Wida schema.
SELECT set_config('search_path', format('%I, public', current_schema()), true);
ALTER FUNCTION release_dependents(bigint[], integer[]) SET search_path FROM CURRENT;
ALTER FUNCTION block_dependents(bigint[], bigint[]) SET search_path FROM CURRENT;
ALTER FUNCTION cancel_dependents(bigint[], text) SET search_path FROM CURRENT;
ALTER FUNCTION delete_edges(bigint[]) SET search_path FROM CURRENT;
ALTER FUNCTION unblock_dependents(bigint[]) SET search_path FROM CURRENT;
