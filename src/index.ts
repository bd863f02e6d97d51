/**
 * Library entry: embed Switchyard in your own Fastify app
 * (`app.register(switchyard, { config })`), or build/run it yourself.
 */

// First, before any other module runs (see the file).
import "./tick-shape.js";

export type { SwitchyardPlugin, SwitchyardRequest } from "../plugins/user-plugins.js";
export { build, genReqId, type SwitchyardOptions, switchyard } from "./app.js";
export { ConfigError, loadConfigFile, parseConfig } from "./config/load.js";
export { type Config, ConfigSchema, type RouteConfig, type ServiceConfig } from "./config/schema.js";
export { type ErrorCode, errorBody, errors } from "./errors.js";
export { buildGeneration, type Generation } from "./generation.js";
export { Gateway } from "./server.js";
