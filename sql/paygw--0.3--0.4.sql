/* paygw--0.3--0.4.sql: reconciliation you can leave running -- leases that
 * cannot outlive their worker, applies that never lose a result to another
 * session's lock, set-based application of a batch of outcomes */

\echo Use "ALTER EXTENSION paygw UPDATE TO '0.4'" to load this file. \quit
