import { Module } from '@nestjs/common';
import { AppConfig } from '../config/app-config';
import { ClaudeAgent } from './claude/claude.agent';
import { ClaudeCliAgent } from './claude/claude-cli.agent';
import { ModelGatewayEndpoint } from './sandbox/model-gateway-endpoint';
import { SandboxProvider } from './sandbox/sandbox-provider';
import { createSandboxProvider } from './sandbox/sandbox-provider.factory';
import { ObjectStore } from './storage/object-store';
import { createObjectStore } from './storage/object-store.factory';

/**
 * Every outside system behind its adapter token (the user's card calls this the ModalModule; Modal
 * is one of its two sandbox engines, so it is named for what it holds): the sandbox engine (local
 * or Modal), object storage (local directory or S3) and the Claude agent. Each adapter is chosen
 * once from the validated configuration; features inject the tokens and never an SDK.
 */
@Module({
  providers: [
    ModelGatewayEndpoint,
    { provide: SandboxProvider, useFactory: createSandboxProvider, inject: [AppConfig, ModelGatewayEndpoint] },
    { provide: ObjectStore, useFactory: createObjectStore, inject: [AppConfig] },
    { provide: ClaudeAgent, useClass: ClaudeCliAgent },
  ],
  exports: [SandboxProvider, ObjectStore, ClaudeAgent, ModelGatewayEndpoint],
})
export class IntegrationsModule {}
