/*-------------------------------------------------------------------------
 *
 * compat.h
 *		Every difference between the PostgreSQL major versions paygw builds
 *		against lives here, and nowhere else.
 *
 * paygw is built and tested against PostgreSQL 15 and 18.  Later majors
 * changed a few signatures we use; each is wrapped below so the rest of the
 * code, test programs included, calls one spelling.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PAYGW_COMPAT_H
#define PAYGW_COMPAT_H

#include "postgres.h"

#include "catalog/pg_database.h"
#include "common/base64.h"
#include "common/jsonapi.h"

#if PG_VERSION_NUM < 150000
#error "paygw requires PostgreSQL 15 or later"
#endif

/* PostgreSQL 18 replaced pg_attribute_noreturn() by a pg_noreturn prefix */
#if PG_VERSION_NUM >= 180000
#define PAYGW_NORETURN_PREFIX pg_noreturn
#define PAYGW_NORETURN_SUFFIX
#else
#define PAYGW_NORETURN_PREFIX
#define PAYGW_NORETURN_SUFFIX pg_attribute_noreturn()
#endif

/*
 * Up to PostgreSQL 15 a chunk's memory context is found through the pointer
 * stored just before the chunk, so a program can bring its own context type
 * (the fuzz harness's one-malloc-per-palloc guard context).  From 16 on a
 * chunk header encodes one of the built-in types in a few bits instead.
 */
#if PG_VERSION_NUM < 160000
#define PAYGW_HAVE_CUSTOM_MEMORY_CONTEXTS 1
#else
#define PAYGW_HAVE_CUSTOM_MEMORY_CONTEXTS 0
#endif

/* pg_b64_encode/decode take uint8 buffers from PostgreSQL 18 on */
#if PG_VERSION_NUM >= 180000
#define paygw_b64_encode(src, len, dst, dstlen) \
	pg_b64_encode((const uint8 *) (src), (len), (dst), (dstlen))
#define paygw_b64_decode(src, len, dst, dstlen) \
	pg_b64_decode((src), (len), (uint8 *) (dst), (dstlen))
#else
#define paygw_b64_encode(src, len, dst, dstlen) \
	pg_b64_encode((const char *) (src), (len), (dst), (dstlen))
#define paygw_b64_decode(src, len, dst, dstlen) \
	pg_b64_decode((src), (len), (char *) (dst), (dstlen))
#endif

/* this backend's local transaction id (PostgreSQL 17 moved it into vxid) */
#if PG_VERSION_NUM >= 170000
#define PAYGW_MY_LXID (MyProc->vxid.lxid)
#else
#define PAYGW_MY_LXID (MyProc->lxid)
#endif

/*
 * A database DROP DATABASE left half-dropped (or is dropping): its
 * datconnlimit is DATCONNLIMIT_INVALID_DB, from 15.4 on.  Takes a
 * Form_pg_database.
 */
#ifdef DATCONNLIMIT_INVALID_DB
#define paygw_database_is_invalid(form) ((form)->datconnlimit == DATCONNLIMIT_INVALID_DB)
#else
#define paygw_database_is_invalid(form) (false)
#endif

/* does roleid own database dboid (or is it a superuser)? (utils/acl.h) */
#if PG_VERSION_NUM >= 160000
#define paygw_database_ownercheck(dboid, roleid) \
	object_ownercheck(DatabaseRelationId, (dboid), (roleid))
#else
#define paygw_database_ownercheck(dboid, roleid) \
	pg_database_ownercheck((dboid), (roleid))
#endif

/*
 * A WaitEventSet that lives as long as the process and belongs to no
 * resource owner (PostgreSQL 17 takes a resource owner instead of a memory
 * context).
 */
#if PG_VERSION_NUM >= 170000
#define paygw_create_wait_event_set(nevents) CreateWaitEventSet(NULL, (nevents))
#else
#define paygw_create_wait_event_set(nevents) CreateWaitEventSet(TopMemoryContext, (nevents))
#endif

/*
 * Run the JSON parser over a document with sem's callbacks (&nullSemAction
 * only validates).  Returns the parser's error code; never throws for
 * malformed input.  (PostgreSQL 17 changed the lexer constructor to fill a
 * caller-supplied struct.)
 */
static inline JsonParseErrorType
paygw_json_run(char *json, int len, int encoding, JsonSemAction *sem)
{
#if PG_VERSION_NUM >= 170000
	JsonLexContext lex;
	JsonParseErrorType result;

	makeJsonLexContextCstringLen(&lex, json, len, encoding, true);
	result = pg_parse_json(&lex, sem);
	freeJsonLexContext(&lex);
	return result;
#else
	JsonLexContext *lex;

	lex = makeJsonLexContextCstringLen(json, len, encoding, true);
	return pg_parse_json(lex, sem);
#endif
}

/*
 * The JSON parser's callbacks return an error code from PostgreSQL 16 on;
 * declare them PAYGW_JSON_ACTION and end them with PAYGW_JSON_ACTION_DONE.
 */
#if PG_VERSION_NUM >= 160000
#define PAYGW_JSON_ACTION JsonParseErrorType
#define PAYGW_JSON_ACTION_DONE return JSON_SUCCESS
#else
#define PAYGW_JSON_ACTION void
#define PAYGW_JSON_ACTION_DONE return
#endif

#endif							/* PAYGW_COMPAT_H */
