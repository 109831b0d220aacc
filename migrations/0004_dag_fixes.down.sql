DROP FUNCTION unblock_dependents(bigint[]);
DROP FUNCTION delete_edges(bigint[]);
DROP FUNCTION cancel_dependents(bigint[], text);
