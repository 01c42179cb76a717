/*-------------------------------------------------------------------------
 *
 * secrets.c
 *		Secrets at rest: AES-256-GCM under a key that lives outside the
 *		database.
 *
 * paygw.key_file (superuser-only) names a keyring file, readable only by the
 * server's user: one 256-bit key per line as 64 hexadecimal digits, '#'
 * comments and blank lines allowed.  The first key seals new values; every
 * key opens values sealed with it.  A sealed value is the text
 *
 *		$paygw$v1$<key id>$<base64(nonce || ciphertext || tag)>
 *
 * where the key id is derived from the key (so a value names the key it
 * needs) and the additional data is "paygw/v1/<column>/<credential name>",
 * so a sealed value moved to another row or column does not open.
 *
 * Without paygw.key_file, values are stored as given (plaintext), and the
 * credentials view says so per row.
 *
 * The keyring is cached in backend memory (wiped when replaced) and reloaded
 * when the setting or the file changes.  Opened plaintexts belong to the
 * caller, which wipes them after use.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "storage/fd.h"
#include "utils/memutils.h"

#include "crypto/crypto.h"
#include "secrets.h"

#define MAX_KEYS 8
#define KEY_LEN 32
#define KEY_ID_LEN 8
#define MAX_KEYRING_FILE 65536

typedef struct Keyring
{
	char		path[MAXPGPATH];
	dev_t		dev;
	ino_t		ino;
	struct timespec mtime;
	off_t		size;
	int			nkeys;
	uint8		keys[MAX_KEYS][KEY_LEN];
	char		ids[MAX_KEYS][KEY_ID_LEN + 1];
} Keyring;

static Keyring *keyring = NULL;

static void
drop_keyring(void)
{
	if (keyring != NULL)
	{
		paygw_wipe(keyring, sizeof(Keyring));
		pfree(keyring);
		keyring = NULL;
	}
}

static bool
key_error(PaygwError *err, const char *detail)
{
	paygw_set_error(err, PAYGW_ERR_INVALID_CREDENTIAL, "paygw.key_file cannot be used");
	paygw_error_detail(err, "%s", detail);
	paygw_error_hint(err, "The file must belong to the server's user, be readable by it alone (chmod 600), and hold one key per line as 64 hexadecimal digits (openssl rand -hex 32).");
	return false;
}

/* Parse the keyring text into kr.  false with err filled on bad content. */
static bool
parse_keyring(char *text, Keyring *kr, PaygwError *err)
{
	char	   *line = text;

	kr->nkeys = 0;
	while (line != NULL && *line != '\0')
	{
		char	   *next = strchr(line, '\n');
		size_t		len;

		if (next)
			*next++ = '\0';
		len = strlen(line);
		while (len > 0 && (line[len - 1] == '\r' || line[len - 1] == ' ' || line[len - 1] == '\t'))
			line[--len] = '\0';
		while (*line == ' ' || *line == '\t')
			line++, len--;
		if (len > 0 && line[0] != '#')
		{
			uint8		digest[32];
			char	   *material;

			if (len != KEY_LEN * 2)
				return key_error(err, "A key line is not 64 hexadecimal digits.");
			if (kr->nkeys >= MAX_KEYS)
				return key_error(err, "The file holds more than 8 keys.");
			for (int i = 0; i < KEY_LEN; i++)
			{
				int			hi = paygw_hex_value(line[2 * i]);
				int			lo = paygw_hex_value(line[2 * i + 1]);

				if (hi < 0 || lo < 0)
					return key_error(err, "A key line is not 64 hexadecimal digits.");
				kr->keys[kr->nkeys][i] = (uint8) (hi << 4 | lo);
			}
			/* key id: the first 4 bytes of sha256("paygw-key-id:" || key), hex */
			material = palloc(13 + KEY_LEN);
			memcpy(material, "paygw-key-id:", 13);
			memcpy(material + 13, kr->keys[kr->nkeys], KEY_LEN);
			if (!paygw_digest(PAYGW_SHA256, material, 13 + KEY_LEN, digest, err))
				return false;
			paygw_wipe(material, 13 + KEY_LEN);
			pfree(material);
			snprintf(kr->ids[kr->nkeys], KEY_ID_LEN + 1, "%02x%02x%02x%02x",
					 digest[0], digest[1], digest[2], digest[3]);
			kr->nkeys++;
		}
		line = next;
	}
	if (kr->nkeys == 0)
		return key_error(err, "The file holds no key.");
	return true;
}

/*
 * The checks a keyring file must pass, on its stat data: a regular file of
 * the server's user, private to it, neither empty nor huge.  false with err
 * filled.
 */
static bool
check_keyring_stat(const struct stat *st, PaygwError *err)
{
	if (!S_ISREG(st->st_mode) || st->st_uid != geteuid())
		return key_error(err, "The file is not a regular file owned by the server's user.");
	if ((st->st_mode & (S_IRWXG | S_IRWXO)) != 0)
		return key_error(err, "The file is accessible to its group or to others.");
	if (st->st_size <= 0 || st->st_size > MAX_KEYRING_FILE)
		return key_error(err, "The file is empty or too large.");
	return true;
}

/*
 * The keyring named by paygw.key_file, loading it when the setting or the
 * file changed.  NULL when the setting is empty (plaintext mode) -- with
 * err->code PAYGW_OK -- or on error, with err filled.
 *
 * The file is opened first and everything is checked on the open
 * descriptor (fstat), so the checks and the bytes read are about the same
 * file even if the path is replaced meanwhile.  O_NONBLOCK keeps a FIFO at
 * that path from blocking the open; it is then refused as not a regular
 * file.
 */
static Keyring *
get_keyring(PaygwError *err)
{
	struct stat st;
	Keyring    *kr;
	char	   *text;
	int			fd;
	ssize_t		got;
	bool		ok;

	err->code = PAYGW_OK;
	if (paygw_key_file == NULL || paygw_key_file[0] == '\0')
	{
		drop_keyring();
		return NULL;
	}
	fd = OpenTransientFile(paygw_key_file, O_RDONLY | O_NONBLOCK | PG_BINARY);
	if (fd < 0)
	{
		/*
		 * Only to say why: a file we may not open is usually one that fails
		 * the checks (another owner, say).  Nothing is read from it.
		 */
		if (stat(paygw_key_file, &st) != 0)
			key_error(err, "The file does not exist or cannot be read.");
		else if (check_keyring_stat(&st, err))
			key_error(err, "The file cannot be opened by the server.");
		return NULL;
	}
	if (fstat(fd, &st) != 0)
	{
		CloseTransientFile(fd);
		key_error(err, "The file does not exist or cannot be read.");
		return NULL;
	}
	if (keyring != NULL && strcmp(keyring->path, paygw_key_file) == 0 &&
		keyring->dev == st.st_dev && keyring->ino == st.st_ino &&
		keyring->mtime.tv_sec == st.st_mtim.tv_sec &&
		keyring->mtime.tv_nsec == st.st_mtim.tv_nsec &&
		keyring->size == st.st_size)
	{
		CloseTransientFile(fd);
		return keyring;
	}

	drop_keyring();
	if (!check_keyring_stat(&st, err))
	{
		CloseTransientFile(fd);
		return NULL;
	}

	text = palloc(st.st_size + 1);
	got = read(fd, text, st.st_size);
	CloseTransientFile(fd);
	if (got != st.st_size)
	{
		paygw_wipe(text, st.st_size + 1);
		pfree(text);
		key_error(err, "The file could not be read completely.");
		return NULL;
	}
	text[got] = '\0';

	kr = MemoryContextAllocZero(TopMemoryContext, sizeof(Keyring));
	ok = parse_keyring(text, kr, err);
	paygw_wipe(text, st.st_size + 1);
	pfree(text);
	if (!ok)
	{
		paygw_wipe(kr, sizeof(Keyring));
		pfree(kr);
		return NULL;
	}
	strlcpy(kr->path, paygw_key_file, sizeof(kr->path));
	kr->dev = st.st_dev;
	kr->ino = st.st_ino;
	kr->mtime = st.st_mtim;
	kr->size = st.st_size;
	keyring = kr;
	return kr;
}

/* Is value a sealed secret (as opposed to plaintext)? */
bool
paygw_secret_is_sealed(const char *value)
{
	return value != NULL && strncmp(value, PAYGW_SEALED_PREFIX, strlen(PAYGW_SEALED_PREFIX)) == 0;
}

static char *
aad_for(const char *name, const char *column)
{
	return psprintf("paygw/v1/%s/%s", column, name);
}

/*
 * The plaintext of a stored value of column of credential name: opened when
 * sealed, copied when plaintext.  palloc'd; the caller wipes it.  NULL with
 * err filled when it cannot be opened.
 */
char *
paygw_secret_open(const char *value, const char *name, const char *column,
				  PaygwError *err)
{
	const char *p;
	const char *dollar;
	char		id[KEY_ID_LEN + 1];
	Keyring    *kr;
	uint8	   *sealed;
	size_t		sealed_len;
	char	   *plaintext;

	if (value == NULL)
		return NULL;
	if (!paygw_secret_is_sealed(value))
		return pstrdup(value);

	p = value + strlen(PAYGW_SEALED_PREFIX);
	dollar = strchr(p, '$');
	if (dollar == NULL || dollar - p != KEY_ID_LEN)
	{
		paygw_set_error(err, PAYGW_ERR_INVALID_CREDENTIAL, "encrypted %s of credential \"%s\" is malformed",
						column, name);
		return NULL;
	}
	memcpy(id, p, KEY_ID_LEN);
	id[KEY_ID_LEN] = '\0';

	kr = get_keyring(err);
	if (kr == NULL)
	{
		if (err->code == PAYGW_OK)
		{
			paygw_set_error(err, PAYGW_ERR_INVALID_CREDENTIAL,
							"%s of credential \"%s\" is encrypted, but paygw.key_file is not set",
							column, name);
			paygw_error_hint(err, "Set paygw.key_file to the keyring holding key %s.", id);
		}
		return NULL;
	}
	for (int i = 0; i < kr->nkeys; i++)
	{
		if (strcmp(kr->ids[i], id) != 0)
			continue;
		if (!paygw_base64_decode(dollar + 1, &sealed, &sealed_len))
		{
			paygw_set_error(err, PAYGW_ERR_INVALID_CREDENTIAL,
							"encrypted %s of credential \"%s\" is malformed", column, name);
			return NULL;
		}
		plaintext = paygw_aead_open(kr->keys[i], aad_for(name, column), sealed, sealed_len, err);
		if (plaintext == NULL)
			snprintf(err->message, sizeof(err->message),
					 "encrypted %s of credential \"%s\" does not decrypt", column, name);
		return plaintext;
	}
	paygw_set_error(err, PAYGW_ERR_INVALID_CREDENTIAL,
					"%s of credential \"%s\" is encrypted with key %s, which is not in paygw.key_file",
					column, name, id);
	paygw_error_hint(err, "Add that key to the keyring (after the current one) until paygw.rotate_key() has re-encrypted every row.");
	return NULL;
}

/*
 * The value to store for plaintext in column of credential name: sealed
 * with the current key when paygw.key_file is set, the plaintext itself
 * otherwise.  palloc'd.  NULL with err filled on failure.
 */
char *
paygw_secret_seal(const char *plaintext, const char *name, const char *column,
				  PaygwError *err)
{
	Keyring    *kr;
	uint8	   *sealed;
	size_t		sealed_len;
	char	   *b64;
	char	   *result;

	if (plaintext == NULL)
		return NULL;
	kr = get_keyring(err);
	if (kr == NULL)
		return err->code == PAYGW_OK ? pstrdup(plaintext) : NULL;
	sealed = paygw_aead_seal(kr->keys[0], aad_for(name, column),
							 (const uint8 *) plaintext, strlen(plaintext), &sealed_len, err);
	if (sealed == NULL)
		return NULL;
	b64 = paygw_base64(sealed, sealed_len);
	result = psprintf("%s%s$%s", PAYGW_SEALED_PREFIX, kr->ids[0], b64);
	pfree(sealed);
	pfree(b64);
	return result;
}

/* The id of the key that seals new values, NULL when none is configured. */
char *
paygw_current_key_id(PaygwError *err)
{
	Keyring    *kr = get_keyring(err);

	return kr ? pstrdup(kr->ids[0]) : NULL;
}
