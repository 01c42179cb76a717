/*-------------------------------------------------------------------------
 *
 * json.h
 *		Turning untrusted gateway replies into jsonb, and reading fields.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PAYGW_JSON_H
#define PAYGW_JSON_H

#include "utils/jsonb.h"

#include "paygw.h"

/* deepest nesting of arrays/objects accepted in a reply */
#define PAYGW_JSON_MAX_DEPTH 32
/* longest number token accepted in a reply */
#define PAYGW_JSON_MAX_NUMBER 64
/* largest exponent accepted in a number (numeric_in's limit is 1000) */
#define PAYGW_JSON_MAX_EXPONENT 300

extern Jsonb *paygw_json_parse(const char *body, size_t len, PaygwError *err);
extern JsonbValue *paygw_json_get(JsonbContainer *obj, const char *key);
extern JsonbContainer *paygw_json_container(JsonbValue *v, bool want_object);
extern bool paygw_json_text(JsonbValue *v, char **out);
extern bool paygw_json_amount(JsonbValue *v, int minor_digits, Datum *out,
							  bool *isnull);

#endif							/* PAYGW_JSON_H */
