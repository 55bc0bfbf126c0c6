/* Remote MCP servers in a client's config, written natively (`url`, `type`, `headers`) or run
 * through a stdio wrapper (`npx mcp-remote URL ...`, `supergateway --sse URL`), turned into the
 * keys of an agentgate remote [server.NAME] section. Pure: no I/O, no environment lookups. */
#ifndef GW_CMD_IMPORT_REMOTE_H
#define GW_CMD_IMPORT_REMOTE_H

#include <stdbool.h>
#include <stddef.h>

#include <cjson/cJSON.h>

/* The client whose file the entry comes from: it decides which ${...} the client itself
 * expands, and what type "http" means. */
enum cmd_import_dialect {
    /* Claude Desktop / Claude Code: ${NAME} is an environment variable (Claude Code's syntax;
     * Claude Desktop has no url entries). */
    CMD_IMPORT_DIALECT_CLAUDE = 0,
    CMD_IMPORT_DIALECT_CURSOR, /* ${env:NAME} */
    CMD_IMPORT_DIALECT_VSCODE, /* ${env:NAME}; ${input:...} and the rest cannot be resolved */
};

/* How the client reached the server. */
enum cmd_import_via {
    CMD_IMPORT_VIA_NATIVE = 0,   /* a url entry the client speaks to itself */
    CMD_IMPORT_VIA_MCP_REMOTE,   /* a stdio entry running mcp-remote */
    CMD_IMPORT_VIA_SUPERGATEWAY, /* a stdio entry running supergateway --sse / --streamableHttp */
};

struct cmd_import_header {
    char *name;
    char *value;          /* an INI value: variables written as ${env:NAME} */
    bool secret_in_clear; /* the name looks like a credential and the value holds no ${env:} */
};

struct cmd_import_remote {
    enum cmd_import_via via;
    char *url;             /* as written, variables as ${env:NAME} */
    const char *transport; /* static: "auto", "streamable-http" or "sse" */
    const char *auth;      /* static: "none", "bearer" or "oauth" */
    char *token_env;       /* with auth "bearer": the variable that holds the token */
    char *ca_file;         /* NULL, or the wrapper's NODE_EXTRA_CA_CERTS */
    char *client_id;       /* with auth "oauth": mcp-remote's --static-oauth-client-info */
    char *client_secret;   /* likewise, or NULL */
    struct cmd_import_header *headers;
    size_t n_headers;
    char **unmapped; /* what has no agentgate equivalent, one item each, as text for a comment
                        ("--host 127.0.0.1", "env.DEBUG = 1", "autoApprove = [...]") */
    size_t n_unmapped;
};

/* A url entry (the caller has decided it is remote) as an import_remote; Windsurf's
 * `serverUrl` is read when there is no `url`. Keys other than type, the url and headers land
 * in unmapped. Returns 0 and sets *out (free it with
 * cmd_import_remote_free), or CORE_EINVAL with the reason in why (a full clause, e.g. "headers.X
 * uses ${input:tok}, a client variable agentgate cannot resolve"). */
int cmd_import_remote_native(enum cmd_import_dialect d, const cJSON *entry,
                             struct cmd_import_remote **out, char *why, size_t whylen);

/* A stdio entry: if its command runs mcp-remote or supergateway in front of a remote server
 * (directly, or through npx, bunx, pnpm dlx, yarn dlx), returns 0 and sets *out. Returns 1
 * when the entry is not such a wrapper (supergateway --stdio included), and CORE_EINVAL with
 * the reason in why when it is one that cannot be converted; *out is untouched then. */
int cmd_import_remote_wrapper(enum cmd_import_dialect d, const cJSON *entry,
                              struct cmd_import_remote **out, char *why, size_t whylen);

/* "mcp-remote", "supergateway" or "url". */
const char *cmd_import_remote_via_name(enum cmd_import_via via);

void cmd_import_remote_free(struct cmd_import_remote *r);

#endif
