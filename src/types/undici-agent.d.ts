// undici's Agent on its own (src/proxy/upstream-client.ts): the package's index would load all of undici.
declare module 'undici/lib/dispatcher/agent.js' {
  import type { Agent } from 'undici';

  const AgentClass: typeof Agent;
  export default AgentClass;
}
