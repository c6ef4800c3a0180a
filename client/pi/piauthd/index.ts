/**
 * The entry pi loads. pi names an extension in its start-up list after the
 * directory of its `index.ts`, so this one is listed as "piauthd"; the
 * code lives in `../src/`.
 */
export { default } from "../src/index.ts";
