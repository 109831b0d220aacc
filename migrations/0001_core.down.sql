DROP FUNCTION retry_delay(text, integer, real, integer, real, integer, double precision);
DROP TABLE agents;
DROP TABLE queues;
DROP TABLE jobs;
