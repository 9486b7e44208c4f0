/*
 * utility_hook.h — what bgw_proxy does around utility statements.
 */
#pragma once

namespace bgw {

/* Called from _PG_init: installs the ProcessUtility hook. */
void utility_hook_register(void);

} // namespace bgw
