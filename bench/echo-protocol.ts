// The bare-stream baseline's protocol id, shared by the echo peer and the bench driver.
export const ECHO_PROTOCOL = '/bench/echo/1.0.0'
